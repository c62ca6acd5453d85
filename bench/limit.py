"""The network's limit for one run, measured from a child process like the job's (the stand-ins' threads
would otherwise share this process's GIL with the measuring client).

- round trip: seconds per page request on one keep-alive connection, body read completely, pages followed
  through `links.next` as the job follows them (parsing the JSON is outside the clock);
- token and Key Vault calls: the least time, over `repeats` tries, of the calls a run must make before its
  first page, each host on a new connection: managed identity token, the four Key Vault secrets (one may
  be absent), Entra ID token.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import requests

VAULT_RESOURCE = "https://vault.azure.net"
PC_SCOPE = "https://api.partnercenter.microsoft.com/.default"
SECRETS = (
    "partner-center-tenant-id",
    "partner-center-client-id",
    "partner-center-client-secret",
    "partner-center-refresh-token",
)


def _auth_calls(env: dict[str, str]) -> tuple[float, str]:
    """(seconds, Partner Center access token) of one pass through the calls before the first page."""
    start = time.perf_counter()
    identity = requests.get(
        env["IDENTITY_ENDPOINT"],
        params={"resource": VAULT_RESOURCE, "api-version": "2019-08-01"},
        headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
        timeout=30,
    )
    identity.raise_for_status()
    values: dict[str, str] = {}
    with requests.Session() as vault:
        vault.headers["Authorization"] = f"Bearer {identity.json()['access_token']}"
        for name in SECRETS:
            response = vault.get(
                f"{env['KEY_VAULT_URL']}/secrets/{name}", params={"api-version": "7.5"}, timeout=30
            )
            if response.status_code == 200:
                values[name] = response.json()["value"]
    token = requests.post(
        f"{env['PARTNER_CENTER_AUTHORITY_HOST']}/{values[SECRETS[0]]}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": values[SECRETS[1]],
            "client_secret": values[SECRETS[2]],
            "scope": PC_SCOPE,
        },
        timeout=30,
    )
    token.raise_for_status()
    return time.perf_counter() - start, token.json()["access_token"]


def _round_trips(env: dict[str, str], token: str, samples: int) -> list[float]:
    api = env["PARTNER_CENTER_API_URL"].rstrip("/")
    page_size = env.get("PARTNER_CENTER_PAGE_SIZE", "500")
    times: list[float] = []
    with requests.Session() as session:
        session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
        session.get(f"{api}/v1/customers?size=1", timeout=30).raise_for_status()  # connect + handshake
        url, headers = f"{api}/v1/customers?size={page_size}", {}
        while len(times) < samples:
            start = time.perf_counter()
            response = session.get(url, headers=headers, timeout=30)
            body = response.content
            times.append(time.perf_counter() - start)
            response.raise_for_status()
            link = (response.json().get("links") or {}).get("next") if body else None
            if link:
                url, headers = f"{api}{link['uri']}", {h["key"]: h["value"] for h in link["headers"]}
            else:  # the last page: start over
                url, headers = f"{api}/v1/customers?size={page_size}", {}
    return times


def measure(samples: int, repeats: int = 5, environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    best, token = math.inf, ""
    for _ in range(repeats):
        seconds, token = _auth_calls(env)
        best = min(best, seconds)
    return {"authSeconds": best, "roundTrips": _round_trips(env, token, samples)}
