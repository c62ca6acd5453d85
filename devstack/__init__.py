"""Local, wire-compatible stand-ins for the Azure and Partner Center services the snapshot job uses."""

from .azurite import Azurite, AzuriteError
from .entra import EntraID
from .key_vault import KeyVault
from .managed_identity import ManagedIdentityEndpoint
from .partner_center import PartnerCenter, RecordedRequest
from .population import make_customers
from .stack import DevStack
from .tls import LocalTLS
from .tokens import TokenError, TokenRegistry, decode_jwt, mint_jwt

__all__ = [
    "Azurite",
    "AzuriteError",
    "DevStack",
    "EntraID",
    "KeyVault",
    "LocalTLS",
    "ManagedIdentityEndpoint",
    "PartnerCenter",
    "RecordedRequest",
    "TokenError",
    "TokenRegistry",
    "decode_jwt",
    "make_customers",
    "mint_jwt",
]
