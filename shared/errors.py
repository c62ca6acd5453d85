"""The product's own errors: one root, so a caller can tell "we refused" from "something broke".

    SnapshotAppError                 root: every condition this app detects and names itself
    ├── SettingsError                a setting is missing or invalid (the message lists every problem)
    ├── SecretsError                 a credential cannot be read from or written to its store
    ├── PartnerCenterError           Partner Center or Entra ID refused, or answered what we cannot trust
    │   └── DeadlineExceeded         the run ran out of time before the last page
    ├── SnapshotStoreError           the snapshot container is not as the layout says it must be
    │   ├── ManifestError            latest.json exists but is not a manifest we wrote
    │   ├── SnapshotExistsError      the run's snapshot name is taken: snapshots are never overwritten
    │   ├── PublishConflictError     latest.json kept changing under a publish
    │   ├── RunLockLost              the run lost its lock (locks/run.lock) before publishing
    │   ├── SnapshotFormatError      a stored snapshot is not a complete document in our layout
    │   │   └── StoredDocumentError  (shared.storage.reader) a stored document that cannot be read, named
    │   └── StorageError             Blob Storage refused or did not answer a step of the run (named)
    ├── SnapshotWithheldError        too many customers gone since the last snapshot: not published
    │   └── NothingToCompareError    latest.json and the .published markers unreadable: not published
    ├── NotStorable                  (shared.customer_rule) a customer the API could not serve
    ├── UnusableIndex                a lookup index this code cannot trust for its snapshot (whole load)
    └── ApiError                     (shared.api.errors) an HTTP answer: status, stable code, message

Control flow inside the app derives from the root too (a page that is not JSON, an index that does not
verify, an outbox record another run took, a snapshot replaced under a request, a body cut short), so no
exception class of shared/ stands outside this tree (tests/project/test_codebase.py holds it).

Anything else that escapes (an SDK's AzureError, OSError, a bug) is not ours and is reported as such; the
job wraps Blob Storage's errors in StorageError to say which step failed.
Messages name settings, secrets, blobs and service codes: never a secret's value, a token or customer data.

`is_transient` says which failures are worth running again within the hour (the timer's retry policy):
an outage is, what needs an operator (or would fail the same way) is not.
"""

from __future__ import annotations

from typing import Any

# HTTP statuses that say "not now" rather than "no": a retry later may well succeed.
_RETRYABLE_STATUSES = frozenset({408, 429})
# OAuth 2.0 (RFC 6749 5.2 / 4.1.2.1) error codes of an authorization server that is down or overloaded.
_RETRYABLE_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


class SnapshotAppError(Exception):
    """Root of the errors this app raises for conditions it detects itself."""


class SettingsError(SnapshotAppError):
    """One or more settings are missing or invalid; the message lists every problem."""


class SecretsError(SnapshotAppError):
    """A credential could not be read or written; the message names it, never its value."""


class PartnerCenterError(SnapshotAppError):
    """Partner Center or Entra ID refused a request, or answered something we cannot trust.

    `status` is the HTTP status and `code` the service's error code, when there was an answer; `transient`
    marks an outage without a telling status (no answer, an answer cut short, Entra ID out of reach)."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, transient: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.transient = (
            transient
            or (status is not None and (status in _RETRYABLE_STATUSES or 500 <= status <= 599))
            or code in _RETRYABLE_TOKEN_ERRORS
        )


class DeadlineExceeded(PartnerCenterError):
    """The run ran out of time before the last page."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)  # a slow night; the next attempt may be quicker


class SnapshotStoreError(SnapshotAppError):
    """The snapshot container holds something the layout does not allow, or would after this write."""


class ManifestError(SnapshotStoreError):
    """latest.json exists but is not a manifest we wrote."""

    etag: str | None = None  # of that latest.json, when it was read from storage


class SnapshotExistsError(SnapshotStoreError):
    """A snapshot with this name exists already; snapshots are never overwritten."""


class PublishConflictError(SnapshotStoreError):
    """latest.json changed under every attempt to publish; the committed snapshot stays unpublished."""


class RunLockLost(SnapshotStoreError):
    """The run's lease on locks/run.lock was lost (it stalled past the lease, and another run took it): it
    publishes nothing, and is not retried, since the run holding the lock is doing the work."""


class SnapshotWithheldError(SnapshotAppError):
    """The run found fewer customers than the previous published snapshot by more than
    SNAPSHOT_MAX_DROP_PERCENT: its snapshot and change record are kept as evidence, latest.json is not
    moved, and the run fails so that the failure alert fires."""

    withheld: Any = None  # what withheld.json says (shared.changes.guard.Withheld), for the notifications


class NothingToCompareError(SnapshotWithheldError):
    """latest.json cannot be read and neither can any `.published` marker (which hold the manifests
    latest.json had): the completeness guard has no count to compare with, so the run publishes nothing
    (it fails closed) until an operator repairs latest.json or turns the guard off."""


class SnapshotFormatError(SnapshotStoreError):
    """A stored snapshot is not a complete JSON document in the one-customer-per-line layout
    (or its gzip stream is damaged)."""


class UnusableIndex(SnapshotAppError, ValueError):
    """A lookup index blob that is not one this code can trust for the snapshot it is asked about
    (shared.snapshots.index): the API loads that snapshot whole instead."""


class StorageError(SnapshotStoreError):
    """Blob Storage refused or did not answer; the message names the step (reading latest.json, storing
    page N, committing, publishing) and the service's status and error code, on one line."""


def is_transient(exc: BaseException) -> bool:
    """True when running the job again within the hour may well succeed: Partner Center, Entra ID, Key Vault
    or Blob Storage did not answer or answered 408/429/5xx (temporarily_unavailable), the run ran out of
    time, or latest.json kept changing. False for what an operator must fix or what would fail the same
    way: settings, a secret missing, empty, forbidden or not authenticated, a refusal (MFA enforcement, an
    expired refresh token, a wrong client secret, another 4xx), a withheld snapshot, a customer that is not
    storable, an answer that cannot be trusted, a blob that is not as written, and a bug."""
    if isinstance(exc, PartnerCenterError):
        return exc.transient
    if isinstance(exc, PublishConflictError):
        return True
    if isinstance(exc, SnapshotAppError) and not isinstance(exc, SecretsError | StorageError):
        return False
    # Key Vault's and Blob Storage's errors are raised from the SDK's error (the message names the step);
    # anything not ours is judged by itself.
    cause = exc if not isinstance(exc, SnapshotAppError) else exc.__cause__ or exc.__context__
    return cause is not None and _outage(cause)


def _outage(exc: BaseException) -> bool:
    from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = int(exc.status_code)
        return status in _RETRYABLE_STATUSES or 500 <= status <= 599
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True  # no answer: refused, reset, timed out
    if isinstance(exc, AzureError):
        return False  # e.g. a credential that cannot get a token: configuration
    import requests

    return isinstance(exc, OSError | requests.RequestException)
