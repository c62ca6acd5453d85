"""The stand-ins speak the real wire protocols: each is driven here by the SDK production code uses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient

from devstack.entra import PC_SCOPE
from devstack.partner_center import PartnerCenter
from devstack.population import make_customers
from devstack.stack import SECRET_CLIENT_ID, SECRET_CLIENT_SECRET, SECRET_REFRESH_TOKEN, DevStack
from devstack.tokens import decode_jwt

MI_CLIENT_ID = "0b6f3a52-8f5e-4c43-9a55-1d2c3e4f5a6b"


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    with DevStack(customers=1234, seed=7, app_user=True, mi_client_id=MI_CLIENT_ID) as running:
        yield running


@pytest.fixture
def env(stack: DevStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The job's settings in os.environ, so SDKs pick up the identity endpoint and the CA bundle."""
    for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    return stack.env


@pytest.fixture
def pc(stack: DevStack) -> Iterator[PartnerCenter]:
    """The Partner Center stand-in with default knobs and no recorded history."""
    server = stack.partner_center
    server.reset()
    yield server
    server.reset()
    server.link_form, server.bom, server.duplicates, server.end_with_400_2000 = "v1", False, False, False


@pytest.fixture(scope="module")
def pc_token(stack: DevStack) -> str:
    return stack.entra.issue_access_token(stack.tenant_id, stack.client_id)


def test_managed_identity_credential_and_user_assigned_id(stack, env):
    token = ManagedIdentityCredential(client_id=env["AZURE_CLIENT_ID"]).get_token(
        "https://vault.azure.net/.default"
    )

    claims = decode_jwt(token.token)
    assert claims["aud"] == "https://vault.azure.net"
    assert claims["iss"] == f"https://sts.windows.net/{stack.tenant_id}/"
    assert stack.identity.requests[-1].client_id == MI_CLIENT_ID
    # Without the user-assigned client id the endpoint refuses, as App Service does.
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
    bad = requests.get(env["IDENTITY_ENDPOINT"], headers={"X-IDENTITY-HEADER": "wrong"}, timeout=5)
    assert bad.status_code == 401


def test_key_vault_through_secret_client(stack, env):
    credential = ManagedIdentityCredential(client_id=env["AZURE_CLIENT_ID"])
    client = SecretClient(env["KEY_VAULT_URL"], credential, verify_challenge_resource=False)

    assert client.get_secret(SECRET_CLIENT_ID).value == stack.client_id
    first = client.get_secret(SECRET_CLIENT_SECRET)
    rotated = client.set_secret(SECRET_CLIENT_SECRET, "new-value")
    assert (
        client.get_secret(SECRET_CLIENT_SECRET).value
        == "new-value"
        == stack.key_vault.get(SECRET_CLIENT_SECRET)
    )
    assert client.get_secret(SECRET_CLIENT_SECRET, first.properties.version).value == stack.client_secret
    assert rotated.properties.version != first.properties.version
    assert rotated.id.startswith(env["KEY_VAULT_URL"] + "secrets/")

    with pytest.raises(ResourceNotFoundError, match="was not found in this key vault"):
        client.get_secret("no-such-secret")
    stack.key_vault.forbidden_get.add("Partner-Center-Refresh-Token")
    with pytest.raises(HttpResponseError, match="does not have secrets get permission") as denied:
        client.get_secret(SECRET_REFRESH_TOKEN)
    assert denied.value.status_code == 403
    stack.key_vault.forbidden_get.clear()
    stack.key_vault.set(SECRET_CLIENT_SECRET, stack.client_secret)
    # The first call was the SDK's unauthenticated challenge round trip.
    assert stack.key_vault.operations[0].status == 401


def test_azurite_accepts_managed_identity_tokens_over_https(stack, env):
    credential = ManagedIdentityCredential(client_id=env["AZURE_CLIENT_ID"])
    service = BlobServiceClient(env["SNAPSHOT_STORAGE_ACCOUNT_URL"], credential=credential, retry_total=0)

    container = service.create_container("devstack-selftest")
    container.upload_blob("hello.json", json.dumps({"name": "Müller & Söhne"}).encode())

    blob = stack.blob_service_client().get_blob_client("devstack-selftest", "hello.json")
    assert json.loads(blob.download_blob().readall()) == {"name": "Müller & Söhne"}
    assert "https://storage.azure.com" in {r.resource for r in stack.identity.requests}


def test_msal_client_credentials_and_rotating_refresh_token(stack, env):
    authority = f"{env['PARTNER_CENTER_AUTHORITY_HOST']}/{stack.tenant_id}"
    app = msal.ConfidentialClientApplication(
        stack.client_id, client_credential=stack.client_secret, authority=authority, instance_discovery=False
    )

    app_only = app.acquire_token_for_client([PC_SCOPE])
    assert stack.entra.validate_access_token(app_only["access_token"])["tid"] == stack.tenant_id

    original = stack.key_vault.get(SECRET_REFRESH_TOKEN)
    user = app.acquire_token_by_refresh_token(original, [PC_SCOPE])
    assert "error" not in user, user
    assert user["refresh_token"] not in (None, original)
    assert user["refresh_token"] == stack.entra.current_refresh_token
    assert stack.entra.validate_access_token(user["access_token"])["idtyp"] == "user"
    assert stack.entra.grant_counts["refresh_token"] == 1

    garbage = app.acquire_token_by_refresh_token("not-a-refresh-token", [PC_SCOPE])
    assert garbage["error"] == "invalid_grant"
    wrong = msal.ConfidentialClientApplication(
        stack.client_id, client_credential="wrong", authority=authority, instance_discovery=False
    ).acquire_token_for_client([PC_SCOPE])
    assert wrong["error"] == "invalid_client"
    assert "AADSTS7000215" in wrong["error_description"]


def resolve(api: str, uri: str) -> str:
    if uri.startswith("https://"):
        return uri
    if uri.startswith("/v1/"):
        return api + uri
    return f"{api}/v1{uri}" if uri.startswith("/") else f"{api}/v1/{uri}"


def fetch_all(api: str, token: str, size: int) -> tuple[list[dict[str, Any]], list[str]]:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    url, headers, items, uris = f"{api}/v1/customers?size={size}", {}, [], []
    while True:
        reply = session.get(url, headers=headers, timeout=10)
        reply.raise_for_status()
        page = json.loads(reply.content.decode("utf-8-sig"))
        assert page["totalCount"] == len(page["items"])
        items += page["items"]
        link = page["links"].get("next")
        if link is None:
            assert not page.get("continuationToken")
            return items, uris
        uris.append(link["uri"])
        url, headers = resolve(api, link["uri"]), {h["key"]: h["value"] for h in link["headers"]}


@pytest.mark.parametrize("form", ["v1", "root", "relative", "absolute", "rotate"])
def test_partner_center_pages_in_every_link_form(stack, env, pc, pc_token, form):
    pc.link_form = form
    items, uris = fetch_all(env["PARTNER_CENTER_API_URL"], pc_token, 100)

    assert items == pc.customers
    assert len(pc.customer_requests) == 13
    assert [r.page for r in pc.customer_requests] == list(range(13))
    token = pc.customer_requests[1].continuation_token
    assert all(c in token for c in "/+=,")
    if form == "rotate":
        assert len({u.split("customers")[0] for u in uris}) == 4


def test_partner_center_quirk_knobs(stack, env, pc, pc_token):
    api = env["PARTNER_CENTER_API_URL"]
    pc.duplicates = True
    items, _ = fetch_all(api, pc_token, 500)
    assert len(items) == len(pc.customers) + 2
    assert len({i["id"] for i in items}) == len(pc.customers)

    pc.duplicates, pc.bom, pc.end_with_400_2000 = False, True, True
    with pytest.raises(requests.HTTPError) as end:
        fetch_all(api, pc_token, 500)
    assert end.value.response.status_code == 400
    assert json.loads(end.value.response.content.decode("utf-8-sig"))["code"] == 2000
    assert end.value.response.content.startswith(b"\xef\xbb\xbf")


def test_partner_center_errors_and_injected_faults(stack, env, pc, pc_token):
    url = f"{env['PARTNER_CENTER_API_URL']}/v1/customers"
    auth = {"Authorization": f"Bearer {pc_token}"}
    get = requests.Session().get

    assert get(url, timeout=5).status_code == 401
    oversized = get(url, params={"size": 501}, headers=auth, timeout=5)
    assert oversized.status_code == 400
    assert oversized.json()["source"] == "PartnerFD"
    garbled = get(
        url + "?seekOperation=Next", headers={**auth, "MS-ContinuationToken": "+RID:/abc=,x"}, timeout=5
    )
    assert garbled.status_code == 400

    pc.reset()
    pc.inject("throttle", at=1, retry_after=7)
    pc.inject("status", at=2, status=503, code=503)
    pc.inject("drop", at=3)
    throttled = get(url, headers=auth, timeout=5)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.json() == {
        "statusCode": 429,
        "message": "Rate limit is exceeded. Try again in 7 seconds.",
    }
    assert get(url, headers=auth, timeout=5).json()["code"] == 503
    with pytest.raises(requests.ConnectionError):
        get(url, headers=auth, timeout=5)
    assert [r.status for r in pc.customer_requests] == [429, 503, None]

    user_token = stack.entra.issue_access_token(stack.tenant_id, stack.client_id)
    pc.inject("expired_token", at=4)
    expired = get(url, headers={"Authorization": f"Bearer {user_token}"}, timeout=5)
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    # The presented token is now revoked for good: the client has to fetch a new one.
    assert get(url, headers={"Authorization": f"Bearer {user_token}"}, timeout=5).status_code == 401
    assert get(url, headers=auth, timeout=5).status_code == 200


def test_population_is_deterministic_unique_and_varied():
    first, again = make_customers(5000, seed=3), make_customers(5000, seed=3)
    assert first == again != make_customers(5000, seed=4)
    assert len({c["id"] for c in first}) == len({c["companyProfile"]["domain"] for c in first}) == 5000
    assert any(not c["companyProfile"]["companyName"].isascii() for c in first)
    assert any(not c["companyProfile"]["domain"].isascii() for c in first)
    assert {c["relationshipToPartner"] for c in first} == {
        "none",
        "reseller",
        "advisor",
        "syndication",
        "microsoft_support",
    }
