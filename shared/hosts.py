"""Host checks that decide trust-related client options from a URL alone (no test switches)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

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
