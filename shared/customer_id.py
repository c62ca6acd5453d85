"""The one rule of which ids name the same customer: a tenant GUID in its canonical form (lower case, no
braces), whatever case or braces it was written with; any other id only as itself.

    tenant_key(customer_id) -> str | None  the canonical GUID the change records key a customer by
    route_id(value) -> str | None          what an id route (`/customers/{customerId}`) accepts, as that key
"""

from __future__ import annotations

import re
import uuid

# What a caller types: the GUID of the Partner Center APIs, optionally in the braces of .NET's "B" format.
_ROUTE_GUID = re.compile(r"(\{)?[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}(?(1)\})")


def tenant_key(customer_id: str) -> str | None:
    """The canonical GUID `customer_id` names, or None when it is no GUID."""
    try:
        return str(uuid.UUID(customer_id))
    except ValueError:
        return None


def route_id(value: str) -> str | None:
    """The customer an id route answers for `value`, or None for anything but a GUID (with or without
    braces): the same key as the change records', so a route and a record never disagree on a tenant."""
    if not _ROUTE_GUID.fullmatch(value):  # fullmatch: `$` would accept a trailing newline
        return None
    return tenant_key(value)
