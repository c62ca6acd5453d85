"""The catalogue of every app setting the product reads: name, default, help, and who reads it.

docs/settings.md and the infra consistency test follow it; shared/settings/reader.py validates values.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        "API_WHOLE_LOAD_MAX_MB",
        "64",
        "The largest snapshot (MB of JSON) an API instance loads whole when it has no lookup index it can "
        "use; a larger one answers 503 `snapshot_unavailable` (logged once) until the next run writes its "
        "index, instead of running the instance out of memory. A whole load holds about 2.2 times the JSON. "
        "1..65536; infra sets it to an eighth of the instance memory (64 on 512 MB, 256 on 2,048 MB).",
        deployed=True,
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

BY_NAME = {s.name: s for s in SETTINGS}
API_NAMES = frozenset(s.name for s in SETTINGS if s.api)

# App settings that carry credentials when KEY_VAULT_URL is not set (read by shared/secrets.py).
CREDENTIAL_SETTINGS = (
    "PARTNER_CENTER_TENANT_ID",
    "PARTNER_CENTER_CLIENT_ID",
    "PARTNER_CENTER_CLIENT_SECRET",
    "PARTNER_CENTER_REFRESH_TOKEN",
    "TEAMS_WORKFLOW_URL",
    "WEBHOOK_SIGNING_SECRET",
)
