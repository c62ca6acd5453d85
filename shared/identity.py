"""The Azure credential used for Key Vault and Blob Storage."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def azure_credential(client_id: str | None) -> TokenCredential:
    """Managed identity where the platform offers one, DefaultAzureCredential elsewhere.

    App Service / Functions expose the identity endpoint through IDENTITY_ENDPOINT (MSI_ENDPOINT on older
    hosts). With a user-assigned identity the client id must be passed, or azure-identity silently asks
    for the system-assigned one.
    """
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    from shared.events import quiet_azure_sdk_logs
    from shared.redact import remember

    remember(os.environ.get("IDENTITY_HEADER"))  # the platform's secret for its identity endpoint
    quiet_azure_sdk_logs()

    if os.environ.get("IDENTITY_ENDPOINT") or os.environ.get("MSI_ENDPOINT"):
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    # Local development: az login, VS Code, environment credentials... never an interactive prompt.
    return DefaultAzureCredential(
        managed_identity_client_id=client_id, exclude_interactive_browser_credential=True
    )
