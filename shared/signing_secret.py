"""The webhook signing secret's form (Standard Webhooks: `whsec_<base64>`, 24 to 64 bytes), in one place.

Settings and Key Vault validate it here when they read it; shared/notify/webhooks.py signs with its key.
"""

from __future__ import annotations

import base64
import binascii

SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def secret_problem(value: str) -> str | None:
    """Why `value` is not a signing secret, in words that never quote it; None when it is one."""
    if not value.startswith(SECRET_PREFIX):
        return f"must be a Standard Webhooks secret: {SECRET_PREFIX}<base64>"
    try:
        key = key_of(value)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX} followed by base64 (A-Z a-z 0-9 + / =)"
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        return (
            f"must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes after {SECRET_PREFIX} (base64-decoded)"
        )
    return None


def key_of(secret: str) -> bytes:
    """The key bytes of a `whsec_` secret (its base64 padded when it comes without, as the spec allows)."""
    raw = secret[len(SECRET_PREFIX) :]
    return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)


def new_secret() -> str:
    """A fresh signing secret (32 random bytes), in the form the settings take."""
    import secrets

    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
