"""Every app setting the product reads: name, default, validation. One frozen object per run.

`SETTINGS` is the catalogue (docs/settings.md and the infra consistency test follow it); `Settings.from_env()`
validates all of them at once and reports every problem in one error, never a setting's value
when the setting is a secret. `Settings.from_env(api=True)` reads only the settings the HTTP lookup
API uses (marked `api`), so the API needs no Partner Center credentials and a job-only mistake
cannot take it down.

catalogue.py  SETTINGS: every setting's name, default, help, and whether deployed, secret, read by the API
reader.py     Reader: one setting at a time, validated, every problem collected; host.json's timeout
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import SettingsError as SettingsError  # re-exported: callers catch it here
from shared.settings.catalogue import (
    API_NAMES,
    CREDENTIAL_SETTINGS,
    DEFAULT_MAX_PAGE_BYTES,
    MAX_PAGE_SIZE,
    MAX_WEBHOOK_URLS,
    PARTNER_CENTER_SCOPE,
    SETTINGS,
    Setting,
)
from shared.settings.reader import HOST_JSON, Reader, StorageTarget

__all__ = [
    "CREDENTIAL_SETTINGS",
    "DEFAULT_MAX_PAGE_BYTES",
    "HOST_JSON",
    "MAX_PAGE_SIZE",
    "MAX_WEBHOOK_URLS",
    "PARTNER_CENTER_SCOPE",
    "SETTINGS",
    "Setting",
    "Settings",
    "SettingsError",
    "StorageTarget",
    "ca_bundle",
    "environment_secrets",
]


@dataclass(frozen=True)
class Settings:
    key_vault_url: str | None
    azure_client_id: str | None
    partner_center_api_url: str
    authority_host: str
    page_size: int
    max_retries: int
    backoff_seconds: float
    timeout_seconds: float
    max_retry_after_seconds: float
    max_page_bytes: int
    run_deadline_seconds: float
    function_timeout_seconds: float | None  # None: the host has no timeout
    max_drop_percent: float
    container: str
    storage: StorageTarget
    storage_retries: int
    events_queue: str | None
    events_send_seconds: float
    queue_account_url: str | None
    health_stale_after_hours: float
    schedule: str
    cache_max_age_seconds: int
    snapshot_inline_max_bytes: int
    sas_lifetime_seconds: int
    latest_check_seconds: float
    stale_serve_seconds: float
    whole_load_max_bytes: int
    # notifications (shared/notify); the Teams URL and the signing secret come from shared/secrets.py
    teams_quiet_nights: bool = False
    webhook_urls: tuple[str, ...] = field(default=(), repr=False)  # a path may hold a hook's token
    api_public_url: str | None = None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, api: bool = False, host_json: Path = HOST_JSON
    ) -> Settings:
        """All settings, validated; `api=True`: only those marked `api` are read, the others keep their
        defaults (the HTTP API never uses them) and no Partner Center credentials are required.
        `host_json`: where the function timeout comes from unless the app setting overrides it.
        Raises SettingsError listing every problem at once."""
        env = os.environ if environ is None else environ
        if api:
            env = {name: value for name, value in env.items() if name in API_NAMES}
        problems: list[str] = []
        reader = Reader(env, problems)
        timeout = reader.function_timeout(host_json)

        key_vault_url = reader.https_url("KEY_VAULT_URL", required=False)
        if key_vault_url is None and not api:
            reader.require_credentials()
        settings = cls(
            key_vault_url=key_vault_url,
            azure_client_id=reader.raw("AZURE_CLIENT_ID"),
            partner_center_api_url=reader.https_url("PARTNER_CENTER_API_URL") or "",
            authority_host=reader.https_url("PARTNER_CENTER_AUTHORITY_HOST") or "",
            page_size=reader.integer("PARTNER_CENTER_PAGE_SIZE", 1, MAX_PAGE_SIZE),
            max_retries=reader.integer("PARTNER_CENTER_MAX_RETRIES", 0, 20),
            backoff_seconds=reader.number("PARTNER_CENTER_BACKOFF_SECONDS", 0, 60),
            timeout_seconds=reader.number("PARTNER_CENTER_TIMEOUT_SECONDS", 0.1, 600),
            max_retry_after_seconds=reader.number("PARTNER_CENTER_MAX_RETRY_AFTER_SECONDS", 0, 3600),
            max_page_bytes=reader.integer("PARTNER_CENTER_MAX_PAGE_BYTES", 64 * 1024, 1024**3),
            run_deadline_seconds=reader.deadline(timeout, below_timeout=not api),
            function_timeout_seconds=timeout,
            max_drop_percent=reader.number("SNAPSHOT_MAX_DROP_PERCENT", 0, 100),
            container=reader.container("SNAPSHOT_CONTAINER"),
            storage=reader.storage(),
            storage_retries=reader.integer("SNAPSHOT_STORAGE_RETRIES", 0, 10),
            events_queue=reader.queue("SNAPSHOT_EVENTS_QUEUE"),
            events_send_seconds=reader.number("SNAPSHOT_EVENTS_SEND_SECONDS", 0, 24 * 3600),
            queue_account_url=reader.https_url("SNAPSHOT_QUEUE_ACCOUNT_URL", required=False),
            health_stale_after_hours=reader.number("HEALTH_STALE_AFTER_HOURS", 0.01, 24 * 365),
            schedule=reader.raw("SNAPSHOT_SCHEDULE") or "",
            cache_max_age_seconds=reader.integer("API_CACHE_MAX_AGE_SECONDS", 0, 24 * 3600),
            snapshot_inline_max_bytes=reader.integer("API_SNAPSHOT_INLINE_MAX_BYTES", 0, 1024**3),
            sas_lifetime_seconds=reader.integer("API_SAS_LIFETIME_SECONDS", 60, 3600),
            latest_check_seconds=reader.number("API_LATEST_CHECK_SECONDS", 0, 300),
            stale_serve_seconds=reader.number("API_STALE_SERVE_SECONDS", 0, 24 * 3600),
            whole_load_max_bytes=reader.integer("API_WHOLE_LOAD_MAX_MB", 1, 65536) * 1024 * 1024,
            **reader.notifications(key_vault_url is not None),
        )
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return settings


def environment_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CREDENTIAL_SETTINGS that are set (trimmed), by name: what a run without Key Vault takes its
    credentials from. Kept out of Settings so that no repr or log of the settings can carry them."""
    env = os.environ if environ is None else environ
    return {name: value for name in CREDENTIAL_SETTINGS if (value := env.get(name, "").strip())}


def ca_bundle(environ: Mapping[str, str] | None = None) -> str:
    """The CA bundle (file or directory) HTTPS clients trust: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, as
    requests reads them, else certifi's; clients that requests does not build (shared/notify) take it here."""
    env = os.environ if environ is None else environ
    bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
    if bundle:
        return bundle
    import certifi

    return str(certifi.where())
