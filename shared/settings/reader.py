"""Reads app settings one at a time, validating each and collecting every problem (shared.settings)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.settings.catalogue import BY_NAME, MAX_WEBHOOK_URLS

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 30 * 60  # Flex Consumption's default when host.json names none
MAX_DEADLINE_SECONDS = 24 * 3600
_TIMESPAN_RE = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):([0-5]\d):([0-5]\d)(?:\.\d+)?$")
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


@dataclass(frozen=True)
class StorageTarget:
    """Where snapshots live: an account URL (token credential) or a connection string."""

    account_url: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    source: str = ""  # the setting it came from, for messages


class Reader:
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
        return BY_NAME[name].default

    def _shown(self, name: str) -> str:
        return "(hidden)" if BY_NAME[name].secret else repr(self.env.get(name, ""))

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
