"""Link URIs in every form Partner Center has used resolve to one absolute URL on the configured API."""

import re

import pytest

from shared.partner_center.customers import CustomerPager
from shared.partner_center.errors import PartnerCenterError

API = "https://api.partnercenter.microsoft.com"
WANT = f"{API}/v1/customers?size=500&seekOperation=Next"


def pager(api: str = API) -> CustomerPager:
    return CustomerPager(
        api,
        tokens=None,
        page_size=500,
        correlation_id="c",
        max_retries=0,
        backoff_seconds=0,
        timeout_seconds=1,
        max_retry_after_seconds=1,
        deadline=0,
    )


@pytest.mark.parametrize(
    "uri",
    [
        "/v1/customers?size=500&seekOperation=Next",
        "/customers?size=500&seekOperation=Next",
        "customers?size=500&seekOperation=Next",
        f"{API}/v1/customers?size=500&seekOperation=Next",
        "HTTPS://API.partnercenter.microsoft.com/v1/customers?size=500&seekOperation=Next",
    ],
    ids=["v1-path", "path-without-v1", "relative", "absolute", "absolute-upper-case-host"],
)
def test_every_link_form_resolves_once(uri):
    assert pager().resolve(uri) == WANT


def test_an_api_url_with_a_trailing_slash_does_not_double_it():
    assert pager(API + "/").resolve("/v1/customers?size=500&seekOperation=Next") == WANT


def test_a_link_to_another_host_is_refused_so_the_token_stays_home():
    with pytest.raises(PartnerCenterError, match="another host"):
        pager().resolve("https://evil.example/v1/customers?seekOperation=Next")


NEXT = "/customers?size=500&seekOperation=Next"


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ({"method": "GET"}, "`links.next` has no uri"),
        ({"uri": "", "method": "GET"}, "`links.next` has no uri"),
        ({"uri": 7, "method": "GET"}, "`links.next` has no uri"),
        ("customers?seekOperation=Next", "`links.next` has no uri"),
        ({"uri": NEXT, "method": "POST"}, "asks for POST, not GET"),
        ({"uri": NEXT, "headers": ["MS-ContinuationToken: x"]}, "bad `links.next` header"),
        ({"uri": NEXT, "headers": [{"value": "x"}]}, "bad `links.next` header"),
        ({"uri": NEXT, "headers": [{"key": 1, "value": "x"}]}, "bad `links.next` header"),
    ],
    ids=[
        "no-uri",
        "empty-uri",
        "uri-not-a-string",
        "link-not-an-object",
        "not-get",
        "header-not-an-object",
        "header-without-key",
        "header-key-not-a-string",
    ],
)
def test_a_next_link_that_cannot_be_trusted_stops_the_run(link, message):
    with pytest.raises(PartnerCenterError, match=re.escape("page 3") + ".*" + re.escape(message)):
        pager()._next_request(link, None, 3)


@pytest.mark.parametrize(
    ("link", "token", "url", "headers"),
    [
        (None, "+RID:~abc", f"{API}/v1/customers?seekOperation=Next", {"MS-ContinuationToken": "+RID:~abc"}),
        ({"uri": NEXT}, None, WANT, {}),
        ({"uri": NEXT, "method": "get"}, None, WANT, {}),
        (
            {"uri": NEXT, "headers": [{"key": "MS-ContinuationToken", "value": "a/b+c=,d"}]},
            None,
            WANT,
            {"MS-ContinuationToken": "a/b+c=,d"},
        ),
        (
            {
                "uri": NEXT,
                "headers": [
                    {"key": "Authorization", "value": "Bearer stolen"},
                    {"key": "MS-RequestId", "value": "1"},
                    {"key": "ms-correlationid", "value": "2"},
                    {"key": "Accept", "value": "text/html"},
                ],
            },
            None,
            WANT,
            {},
        ),
        ({"uri": NEXT}, "+RID:~ignored", WANT, {}),
    ],
    ids=[
        "token-without-link",
        "link",
        "method-case-insensitive",
        "continuation-header-verbatim",
        "own-headers-never-replaced",
        "link-wins-over-token",
    ],
)
def test_the_next_request(link, token, url, headers):
    request = pager()._next_request(link, token, 3)
    assert request is not None
    assert request.url == url
    assert request.headers == headers


@pytest.mark.parametrize("token", [None, ""], ids=["no-token", "empty-token"])
def test_no_link_and_no_token_is_the_last_page(token):
    assert pager()._next_request(None, token, 3) is None
