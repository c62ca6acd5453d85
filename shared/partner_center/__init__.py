"""Partner Center REST client: tokens, and every customer of GET /v1/customers, page by page.

auth.py       PartnerCenterTokens: access tokens from Entra ID (app-only or App+User), renewed on demand
customers.py  CustomerPager: the pager (links.next in every form, de-duplication, the storable rule)
fetch.py      PageFetcher: one page's GET (headers, token renewal, retries and body bounds from one
              budget, the run's deadline) on the transport of shared/transport
prefetch.py   Prefetch: the next page's request on a helper thread while this one is parsed
refusals.py   refusal: Partner Center's refusals as PartnerCenterError (the end of paging, MFA advice)
page_json.py  parse_page: a page's JSON and each customer's text exactly as received
seen.py       SeenKeys: the customers seen in a run, exact, in bounded memory at any size
errors.py     PartnerCenterError and DeadlineExceeded (defined in shared/errors.py)
"""
