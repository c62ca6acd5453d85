"""What Partner Center's refusals mean, as our errors: the status, the service's code and description
(scrubbed of anything this process holds secret), and what to do when it is an operator's to fix.

Two answers are not what they look like: a 400 with code 2000 after the last page is the documented "no more
records" (the end, not an error), and a 401 naming MFA enforcement means the refresh token was not obtained
with multi-factor authentication: the message says how to replace it. A redirect is refused, not followed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

from shared import events
from shared.events import log_event
from shared.partner_center.errors import PartnerCenterError
from shared.redact import scrubbed

log = logging.getLogger("shared.partner_center.customers")  # the pager's events, under one logger

NO_MORE_RECORDS = "2000"
_MFA_CODES = frozenset({"900421", "10001"})
_MFA_ADVICE = (
    "Partner Center requires multi-factor authentication (MFA) for App+User calls: the refresh token was "
    "not obtained with MFA. Sign in again with MFA through the Partner Center consent flow and replace the "
    "refresh token in Key Vault secret 'partner-center-refresh-token' (PARTNER_CENTER_REFRESH_TOKEN without "
    "Key Vault). "
)


def refusal(status: int, headers: Mapping[str, str], body: bytes, number: int) -> PartnerCenterError | None:
    """None for the documented "no more records" answer after the last page (400, code 2000); otherwise
    the error naming the status and the service's code (and what to do, for MFA enforcement)."""
    if 300 <= status < 400:
        target = urlsplit(headers.get("Location") or "")
        where = f" to {target.scheme}://{target.netloc}" if target.netloc else ""
        return PartnerCenterError(
            f"page {number}: Partner Center answered HTTP {status} (a redirect{where}); "
            "redirects are not followed, nothing is sent outside PARTNER_CENTER_API_URL",
            status=status,
        )
    code, description = error_of(body)
    if status == 400 and number > 1 and code == NO_MORE_RECORDS:
        log_event(log, logging.INFO, events.PARTNER_CENTER_NO_MORE_RECORDS, page=number)
        return None
    advice = _MFA_ADVICE if status == 401 and _is_mfa(code, description) else ""
    return PartnerCenterError(
        f"page {number}: {advice}Partner Center answered HTTP {status}"
        + (f", code {code}" if code else "")
        + (f": {description}" if description else ""),
        status=status,
        code=code,
    )


def error_of(body: bytes) -> tuple[str | None, str | None]:
    """(code, description) of a Partner Center error body, scrubbed of anything this process holds secret;
    the 429 body has another shape."""
    try:
        parsed = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    code = parsed.get("code", parsed.get("statusCode"))
    description = parsed.get("description", parsed.get("message"))
    return (
        None if code is None else scrubbed(str(code), 100),
        None if description is None else scrubbed(str(description), 300) or None,
    )


def _is_mfa(code: str | None, description: str | None) -> bool:
    return code in _MFA_CODES or "mfa required" in (description or "").lower()
