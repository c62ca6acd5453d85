"""Host checks that decide trust-related client options from a URL alone (no test switches), and the
rule for a notification endpoint (https, or plain http to loopback only)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_ENDPOINT_URL_CHARS = 2048

# Entra ID authority hosts MSAL knows; instance discovery only makes sense against them.
KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_known_authority(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() in KNOWN_AUTHORITY_HOSTS


def endpoint_problem(url: str) -> str | None:
    """Why `url` cannot be a notification endpoint, in words that never quote it (its path and query may
    hold a secret); None when it can: https, or http to a loopback address (a local receiver)."""
    if len(url) > MAX_ENDPOINT_URL_CHARS:
        return f"is longer than {MAX_ENDPOINT_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an https:// URL"
    if parts.scheme == "http" and not is_loopback(url):
        return (
            "must be an https:// URL (plain http is allowed for loopback only), "
            f"got http for host {parts.hostname}"
        )
    if parts.username or parts.password:
        return "must not carry a user name or password"
    if port == 0:
        return "has port 0"
    return None
