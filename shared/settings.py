"""Every app setting the product reads: name, default, validation. One frozen object per run.

`SETTINGS` is the catalogue (README and the infra consistency test read it); `Settings.from_env()`
validates all of them at once and reports every problem in one error, never a setting's value
when the setting is a secret. `Settings.from_env(api=True)` reads only the settings the HTTP lookup
API uses (marked `api`), so the API needs no Partner Center credentials and a job-only mistake
cannot take it down.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.errors import SettingsError as SettingsError  # re-exported: callers catch it here

PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/.default"
MAX_PAGE_SIZE = 500  # the service (and Microsoft's Java SDK) allow 1..500
DEFAULT_MAX_PAGE_BYTES = 32 * 1024 * 1024
MAX_WEBHOOK_URLS = 10


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    help: str
    #: The deployed app must set it (infra/ provides it as an app setting).
    deployed: bool = False
    secret: bool = False
    #: The HTTP lookup API reads it too (Settings.from_env(api=True) ignores every other setting).
    api: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "SNAPSHOT_SCHEDULE",
        "0 0 2 * * *",
        "NCRONTAB (six fields, seconds first, UTC) of the snapshot timer; read by the Functions host.",
        deployed=True,
        api=True,
    ),
    Setting(
        "KEY_VAULT_URL",
        None,
        "Vault holding the Partner Center credentials; when unset they come from the PARTNER_CENTER_* "
        "variables below.",
        deployed=True,
    ),
    Setting(
        "AZURE_CLIENT_ID",
        None,
        "Client id of the user-assigned managed identity (unset: system-assigned).",
        deployed=True,
        api=True,
    ),
    Setting("PARTNER_CENTER_TENANT_ID", None, "Partner tenant id, used only when KEY_VAULT_URL is unset."),
    Setting("PARTNER_CENTER_CLIENT_ID", None, "App (client) id, used only when KEY_VAULT_URL is unset."),
    Setting(
        "PARTNER_CENTER_CLIENT_SECRET",
        None,
        "App secret, used only when KEY_VAULT_URL is unset.",
        secret=True,
    ),
    Setting(
        "PARTNER_CENTER_REFRESH_TOKEN",
        None,
        "App+User refresh token, used only when KEY_VAULT_URL is unset (optional).",
        secret=True,
    ),
    Setting(
        "PARTNER_CENTER_API_URL",
        "https://api.partnercenter.microsoft.com",
        "Partner Center API base (21Vianet: https://partner.partnercenterapi.microsoftonline.cn).",
    ),
    Setting(
        "PARTNER_CENTER_AUTHORITY_HOST",
        "https://login.microsoftonline.com",
        "Entra ID authority host (US Gov: https://login.microsoftonline.us, 21Vianet: "
        "https://login.chinacloudapi.cn).",
    ),
    Setting("PARTNER_CENTER_PAGE_SIZE", str(MAX_PAGE_SIZE), "Customers per page, 1..500."),
    Setting(
        "PARTNER_CENTER_MAX_RETRIES",
        "6",
        "Retries of one page request after throttling, 5xx, timeouts or dropped connections.",
    ),
    Setting(
        "PARTNER_CENTER_BACKOFF_SECONDS",
        "1",
        "First wait of the exponential backoff (with jitter) when the service gives no Retry-After.",
    ),
    Setting(
        "PARTNER_CENTER_TIMEOUT_SECONDS",
        "100",
        "Connect and read timeout of one Partner Center request; reading one answer's body takes at most "
        "this long too (then it is retried).",
    ),
    Setting(
        "PARTNER_CENTER_MAX_RETRY_AFTER_SECONDS",
        "120",
        "Longest wait honoured from a Retry-After header (longer answers are capped; whole seconds, "
        "a fraction rounds up).",
    ),
    Setting(
        "PARTNER_CENTER_MAX_PAGE_BYTES",
        str(DEFAULT_MAX_PAGE_BYTES),
        "Largest page body accepted (decoded bytes); a larger one fails the run. A full 500-customer page "
        "is about 1 MB.",
    ),
    Setting(
        "SNAPSHOT_RUN_DEADLINE_SECONDS",
        None,
        "A run that has not finished paging by then fails, with snapshot.failed, before the host stops it. "
        "Unset: the function timeout in force less a margin for what follows the last page (5 minutes, "
        "10 % past 50 minutes, at most half): 1500 with the default 30 minutes. Set: below the timeout.",
        api=True,
    ),
    Setting(
        "AzureFunctionsJobHost__functionTimeout",
        None,
        "The Functions host's timeout of one invocation (hh:mm:ss or d.hh:mm:ss; -1: none), read by the host "
        "and by the job for its deadline; overrides host.json's functionTimeout (00:30:00). infra/ sets it "
        "from the functionTimeout parameter.",
        deployed=True,
        api=True,
    ),
    Setting(
        "SNAPSHOT_MAX_DROP_PERCENT",
        "10",
        "A run that finds fewer customers than the latest published snapshot by more than this percentage "
        "keeps its snapshot as evidence but does not publish it and fails (0..100; 100 turns the guard off).",
    ),
    Setting(
        "SNAPSHOT_CONTAINER",
        "customer-snapshots",
        "Blob container for snapshots and latest.json.",
        deployed=True,
        api=True,
    ),
    Setting(
        "SNAPSHOT_STORAGE_ACCOUNT_URL",
        None,
        "Blob endpoint reached with the managed identity, e.g. https://<account>.blob.core.windows.net.",
        deployed=True,
        api=True,
    ),
    Setting(
        "SNAPSHOT_STORAGE_CONNECTION_STRING",
        None,
        "Connection string instead of the account URL (Azurite, local runs).",
        secret=True,
        api=True,
    ),
    Setting(
        "AzureWebJobsStorage__blobServiceUri",
        None,
        "Fallback: the host storage's blob endpoint (identity-based connection).",
        deployed=True,
        api=True,
    ),
    Setting(
        "AzureWebJobsStorage", None, "Fallback: the host storage's connection string.", secret=True, api=True
    ),
    Setting("SNAPSHOT_STORAGE_RETRIES", "4", "Retries of one Blob Storage request.", api=True),
    Setting(
        "SNAPSHOT_EVENTS_QUEUE",
        None,
        "Storage queue (in the snapshot storage account) that each published run sends its change events "
        "to, as CloudEvents; unset: no events.",
        deployed=True,
    ),
    Setting(
        "SNAPSHOT_EVENTS_SEND_SECONDS",
        "1500",
        "Longest a run spends delivering change events and notifications (queue, webhooks, Teams card, "
        "side by side) after publishing its snapshot (0..86400), and never past "
        "SNAPSHOT_RUN_DEADLINE_SECONDS; what is left is sent by the next run, from where this one stopped.",
    ),
    Setting(
        "SNAPSHOT_QUEUE_ACCOUNT_URL",
        None,
        "Queue endpoint of the snapshot storage account, e.g. https://<account>.queue.core.windows.net "
        "(unset: the blob endpoint with .blob. replaced by .queue.; with a connection string, its "
        "QueueEndpoint).",
        deployed=True,
    ),
    # -- notifications (shared/notify): a Teams card and signed webhooks ---------------------------------
    Setting(
        "TEAMS_WORKFLOW_URL",
        None,
        "URL of the Teams Workflows webhook the run's card is posted to, used only when KEY_VAULT_URL is "
        "unset (then Key Vault secret teams-workflow-url); unset: no cards. https only (plain http for "
        "loopback); a secret: never logged.",
        secret=True,
    ),
    Setting(
        "TEAMS_QUIET_NIGHTS",
        "false",
        "true: also post a short card after a run without changes.",
        deployed=True,
    ),
    Setting(
        "WEBHOOK_URLS",
        None,
        "Endpoints each published run POSTs its change events to as signed CloudEvents batches, separated "
        "by commas or spaces (at most 10); https only (plain http for loopback); unset: no webhooks.",
        deployed=True,
    ),
    Setting(
        "WEBHOOK_SIGNING_SECRET",
        None,
        "Standard Webhooks signing secret (whsec_<base64>, 24 to 64 bytes), used only when KEY_VAULT_URL is "
        "unset (then Key Vault secret webhook-signing-secret); required when WEBHOOK_URLS is set.",
        secret=True,
    ),
    Setting(
        "API_PUBLIC_URL",
        None,
        "The app's public base URL (https://<app>.azurewebsites.net; infra sets it), for the links in cards.",
        deployed=True,
    ),
    Setting(
        "HEALTH_STALE_AFTER_HOURS",
        "26",
        "GET /api/health reports `stale` when the latest snapshot is older.",
        api=True,
    ),
    Setting(
        "API_CACHE_MAX_AGE_SECONDS",
        "300",
        "Longest a client may reuse an answer about the latest snapshot before revalidating it with its "
        "ETag (never past the next SNAPSHOT_SCHEDULE occurrence), 0..86400.",
        api=True,
    ),
    Setting(
        "API_SNAPSHOT_INLINE_MAX_BYTES",
        str(16 * 1024 * 1024),
        "Largest whole-snapshot answer sent in the response body (gzip bytes when the client accepts gzip, "
        "JSON bytes otherwise); a larger one is a 307 redirect to a short-lived read-only SAS URL of the "
        "blob.",
        api=True,
    ),
    Setting(
        "API_LATEST_CHECK_SECONDS",
        "1",
        "How long a warm instance trusts its last look at latest.json before asking Blob Storage again "
        "(a conditional GET); 0 asks on every request.",
        api=True,
    ),
    Setting(
        "API_STALE_SERVE_SECONDS",
        "3600",
        "How long a warm instance keeps answering from the snapshot in memory while Blob Storage cannot be "
        "reached (counted from its last successful look at latest.json; /api/health says `degraded`), "
        "0..86400; 0 answers 503 at once.",
        api=True,
    ),
    Setting(
        "API_SAS_LIFETIME_SECONDS",
        "300",
        "Lifetime of the SAS URL a large whole-snapshot request is redirected to, 60..3600.",
        api=True,
    ),
)

# The app's host.json, beside the shared package (/home/site/wwwroot in Azure).
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 30 * 60  # Flex Consumption's default when host.json names none
MAX_DEADLINE_SECONDS = 24 * 3600
_TIMESPAN_RE = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):([0-5]\d):([0-5]\d)(?:\.\d+)?$")

_BY_NAME = {s.name: s for s in SETTINGS}
_API_NAMES = frozenset(s.name for s in SETTINGS if s.api)
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


@dataclass(frozen=True)
class StorageTarget:
    """Where snapshots live: an account URL (token credential) or a connection string."""

    account_url: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    source: str = ""  # the setting it came from, for messages


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
            env = {name: value for name, value in env.items() if name in _API_NAMES}
        problems: list[str] = []
        reader = _Reader(env, problems)
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
            **reader.notifications(key_vault_url is not None),
        )
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return settings


class _Reader:
    """Reads one setting at a time, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self.env = env
        self.problems = problems

    def require_credentials(self) -> None:
        """Without Key Vault, the Partner Center app credentials come from the environment."""
        for name in ("PARTNER_CENTER_TENANT_ID", "PARTNER_CENTER_CLIENT_ID", "PARTNER_CENTER_CLIENT_SECRET"):
            if not self.raw(name):
                self.problems.append(f"{name} is required when KEY_VAULT_URL is not set")

    def raw(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        if value:
            return value
        return _BY_NAME[name].default

    def _shown(self, name: str) -> str:
        return "(hidden)" if _BY_NAME[name].secret else repr(self.env.get(name, ""))

    def https_url(self, name: str, *, required: bool = True) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.problems.append(f"{name} is required")
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            self.problems.append(f"{name} must be an https:// URL, got {self._shown(name)}")
            return None
        return value.rstrip("/")

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.raw(name) or ""
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            self.problems.append(
                f"{name} must be a whole number from {low} to {high}, got {self._shown(name)}"
            )
            return low
        return number

    def number(self, name: str, low: float, high: float) -> float:
        value = self.raw(name) or ""
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not low <= number <= high:  # also rejects nan
            self.problems.append(f"{name} must be a number from {low:g} to {high:g}, got {self._shown(name)}")
            return low
        return number

    def function_timeout(self, host_json: Path) -> float | None:
        """The host's timeout in seconds (None: none): the app setting, else host.json's functionTimeout,
        else Flex Consumption's default."""
        name = "AzureFunctionsJobHost__functionTimeout"
        value = self.raw(name)
        source = name
        if value is None:
            value, source = _host_json_timeout(host_json), f"functionTimeout in {host_json.name}"
        if value is None:
            return DEFAULT_FUNCTION_TIMEOUT_SECONDS
        seconds = _timespan_seconds(value)
        if seconds is None or seconds == 0:
            self.problems.append(
                f"{source} must be a duration above zero (hh:mm:ss or d.hh:mm:ss) or -1 for none, "
                f"got {value!r}"
            )
            return DEFAULT_FUNCTION_TIMEOUT_SECONDS
        return None if seconds < 0 else seconds

    def deadline(self, timeout: float | None, *, below_timeout: bool) -> float:
        """SNAPSHOT_RUN_DEADLINE_SECONDS, or the timeout less a margin for the work after the last page.
        `below_timeout`: a deadline the host's timeout would cut short is a problem (for the job; the API
        only reads it for its cache window, and a job-only mistake must not take the API down)."""
        name = "SNAPSHOT_RUN_DEADLINE_SECONDS"
        if self.raw(name) is None:
            if timeout is None:
                return MAX_DEADLINE_SECONDS
            return max(1.0, timeout - min(max(300.0, timeout / 10), timeout / 2))
        deadline = self.number(name, 1, MAX_DEADLINE_SECONDS)
        if below_timeout and timeout is not None and deadline >= timeout:
            self.problems.append(
                f"{name} ({deadline:g}) must be less than the function timeout ({timeout:g} s, "
                "AzureFunctionsJobHost__functionTimeout or host.json): the host would stop the run first"
            )
        return deadline

    def container(self, name: str) -> str:
        value = self.raw(name) or ""
        if not _CONTAINER_RE.match(value):
            self.problems.append(
                f"{name} must be a valid container name (3-63 lowercase letters, digits and single hyphens), "
                f"got {self._shown(name)}"
            )
        return value

    def queue(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not _CONTAINER_RE.match(value):  # queue names follow the same rule
            self.problems.append(
                f"{name} must be a valid queue name (3-63 lowercase letters, digits and single hyphens), "
                f"got {self._shown(name)}"
            )
        return value

    # -- notifications ---------------------------------------------------------------------------------
    def notifications(self, key_vault: bool) -> dict[str, Any]:
        """The notification settings; without Key Vault also the checks of the two secrets' app settings
        (with it, shared/secrets.py checks the Key Vault secrets)."""
        urls = self.endpoints("WEBHOOK_URLS")
        if not key_vault:
            teams = self.raw("TEAMS_WORKFLOW_URL")
            if teams is not None:
                self.endpoint("TEAMS_WORKFLOW_URL", teams)
            self.signing_secret("WEBHOOK_SIGNING_SECRET", required=bool(urls))
        public = self.raw("API_PUBLIC_URL")
        return {
            "teams_quiet_nights": self.boolean("TEAMS_QUIET_NIGHTS"),
            "webhook_urls": urls,
            "api_public_url": self.endpoint("API_PUBLIC_URL", public) if public else None,
        }

    def endpoints(self, name: str) -> tuple[str, ...]:
        urls = tuple(dict.fromkeys((self.raw(name) or "").replace(",", " ").split()))
        if len(urls) > MAX_WEBHOOK_URLS:
            self.problems.append(f"{name} names {len(urls)} URLs, at most {MAX_WEBHOOK_URLS} are allowed")
        return tuple(url for index, url in enumerate(urls, 1) if self.endpoint(f"{name} URL {index}", url))

    def endpoint(self, label: str, url: str) -> str | None:
        """`url` when it is https (or http to loopback); the problem never quotes it (a path or query may
        hold a secret: a Teams workflow's signature)."""
        from shared.hosts import endpoint_problem

        problem = endpoint_problem(url)
        if problem is not None:
            self.problems.append(f"{label} {problem}")
            return None
        return url.rstrip("/")

    def signing_secret(self, name: str, *, required: bool) -> None:
        from shared.signing_secret import secret_problem

        value = self.raw(name)
        if value is None:
            if required:
                self.problems.append(
                    f"{name} is required when WEBHOOK_URLS is set (Key Vault secret webhook-signing-secret "
                    "when KEY_VAULT_URL is set)"
                )
            return
        problem = secret_problem(value)
        if problem is not None:
            self.problems.append(f"{name} {problem}")

    def boolean(self, name: str) -> bool:
        value = (self.raw(name) or "").lower()
        if value in ("true", "1", "yes", "on"):
            return True
        if value not in ("false", "0", "no", "off"):
            self.problems.append(f"{name} must be true or false, got {self._shown(name)}")
        return False

    def storage(self) -> StorageTarget:
        for name, kind in (
            ("SNAPSHOT_STORAGE_ACCOUNT_URL", "url"),
            ("SNAPSHOT_STORAGE_CONNECTION_STRING", "conn"),
            ("AzureWebJobsStorage__blobServiceUri", "url"),
            ("AzureWebJobsStorage", "conn"),
        ):
            value = self.raw(name)
            if not value:
                continue
            if kind == "conn":
                return StorageTarget(connection_string=value, source=name)
            url = self.https_url(name)
            return StorageTarget(account_url=url, source=name)
        self.problems.append(
            "no snapshot storage: set SNAPSHOT_STORAGE_ACCOUNT_URL (managed identity) or "
            "SNAPSHOT_STORAGE_CONNECTION_STRING, or AzureWebJobsStorage"
        )
        return StorageTarget()


# App settings that carry credentials when KEY_VAULT_URL is not set (read by shared/secrets.py).
CREDENTIAL_SETTINGS = (
    "PARTNER_CENTER_TENANT_ID",
    "PARTNER_CENTER_CLIENT_ID",
    "PARTNER_CENTER_CLIENT_SECRET",
    "PARTNER_CENTER_REFRESH_TOKEN",
    "TEAMS_WORKFLOW_URL",
    "WEBHOOK_SIGNING_SECRET",
)


def environment_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CREDENTIAL_SETTINGS that are set (trimmed), by name: what a run without Key Vault takes its
    credentials from. Kept out of Settings so that no repr or log of the settings can carry them."""
    env = os.environ if environ is None else environ
    return {name: value for name in CREDENTIAL_SETTINGS if (value := env.get(name, "").strip())}


def _host_json_timeout(path: Path) -> str | None:
    """host.json's functionTimeout as written ("-1" for null); None when it names none or cannot be read
    (the host would not start with a host.json it cannot read)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or "functionTimeout" not in document:
        return None
    value = document["functionTimeout"]
    return "-1" if value is None else str(value)


def _timespan_seconds(value: str) -> float | None:
    """Seconds of a .NET TimeSpan in the forms host.json uses ([d.]hh:mm:ss[.fff]); -1 for "-1" (none);
    None when it is not one."""
    if value.strip() == "-1":
        return -1
    match = _TIMESPAN_RE.match(value.strip())
    if match is None:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    if hours > 23:
        return None
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
