"""Errors of the Partner Center client (defined with the rest of the tree in shared/errors.py).

Messages carry service codes, never tokens or secrets."""

from shared.errors import DeadlineExceeded as DeadlineExceeded
from shared.errors import PartnerCenterError as PartnerCenterError
