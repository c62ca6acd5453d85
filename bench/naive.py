"""The naive client the job is compared with: what a first attempt would look like.

Same stand-ins and credentials as the job (managed identity → Key Vault → Entra ID → Partner Center →
Blob Storage), but a new connection for every request (`requests.get`, no session), every customer kept in
one list, one `json.dumps` of the whole document and one `upload_blob` at the end. No retries, no
de-duplication, no gzip: it does less than the job, and is still slower and grows with the data.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import requests

VAULT_RESOURCE = "https://vault.azure.net"
PC_SCOPE = "https://api.partnercenter.microsoft.com/.default"


def run_naive(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    timeout = 100
    identity = requests.get(
        env["IDENTITY_ENDPOINT"],
        params={"resource": VAULT_RESOURCE, "api-version": "2019-08-01"},
        headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
        timeout=timeout,
    )
    identity.raise_for_status()
    vault_auth = {"Authorization": f"Bearer {identity.json()['access_token']}"}

    def secret(name: str) -> str:
        response = requests.get(
            f"{env['KEY_VAULT_URL']}/secrets/{name}",
            params={"api-version": "7.5"},
            headers=vault_auth,
            timeout=timeout,
        )
        response.raise_for_status()
        return response.json()["value"]

    tenant = secret("partner-center-tenant-id")
    client_id = secret("partner-center-client-id")
    client_secret = secret("partner-center-client-secret")
    token = requests.post(
        f"{env['PARTNER_CENTER_AUTHORITY_HOST']}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": PC_SCOPE,
        },
        timeout=timeout,
    )
    token.raise_for_status()
    auth = {"Authorization": f"Bearer {token.json()['access_token']}", "Accept": "application/json"}

    api = env["PARTNER_CENTER_API_URL"].rstrip("/")
    url = f"{api}/v1/customers?size={env.get('PARTNER_CENTER_PAGE_SIZE', '500')}"
    headers: dict[str, str] = {}
    customers: list[dict[str, Any]] = []
    pages = 0
    while True:
        response = requests.get(url, headers={**auth, **headers}, timeout=timeout)
        if response.status_code == 400 and pages:
            break  # "no more records"
        response.raise_for_status()
        pages += 1
        page = json.loads(response.content.decode("utf-8-sig"))
        customers.extend(page["items"])
        link = (page.get("links") or {}).get("next")
        if not link:
            break
        uri = link["uri"]
        url = uri if uri.startswith("https://") else f"{api}/v1/{uri.removeprefix('/').removeprefix('v1/')}"
        headers = {h["key"]: h["value"] for h in link.get("headers") or []}

    generated_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document = {"schemaVersion": 1, "generatedAt": generated_at, "customers": customers}
    document["customerCount"] = len(customers)
    data = json.dumps(document, ensure_ascii=False).encode()

    from azure.core.exceptions import ResourceExistsError
    from azure.identity import ManagedIdentityCredential
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(env["SNAPSHOT_STORAGE_ACCOUNT_URL"], credential=ManagedIdentityCredential())
    container = service.get_container_client(env.get("SNAPSHOT_CONTAINER", "customer-snapshots"))
    # The job's run may create it at the same moment (the bench runs them side by side).
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    container.upload_blob(f"naive/customers-{time.time_ns()}.json", data, overwrite=True)
    return {"customers": len(customers), "pages": pages, "jsonBytes": len(data), "storedBytes": len(data)}
