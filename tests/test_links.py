"""Link URIs in every form Partner Center has used resolve to one absolute URL on the configured API."""

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
)
def test_every_link_form_resolves_once(uri):
    assert pager().resolve(uri) == WANT


def test_an_api_url_with_a_trailing_slash_does_not_double_it():
    assert pager(API + "/").resolve("/v1/customers?size=500&seekOperation=Next") == WANT


def test_a_link_to_another_host_is_refused_so_the_token_stays_home():
    with pytest.raises(PartnerCenterError, match="another host"):
        pager().resolve("https://evil.example/v1/customers?seekOperation=Next")
