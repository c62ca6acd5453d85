"""The smallest settings the job accepts."""

from __future__ import annotations

MINIMAL = {
    "KEY_VAULT_URL": "https://kv.vault.azure.net",
    "SNAPSHOT_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net",
}
