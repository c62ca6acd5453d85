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
    │   ├── SnapshotFormatError      a stored snapshot is not a complete document in our layout
    │   └── StorageError             Blob Storage refused or did not answer a step of the run (named)
    ├── SnapshotWithheldError        too many customers gone since the last snapshot: not published
    │   └── NothingToCompareError    latest.json and the .published markers unreadable: not published
    ├── NotStorable                  (shared.customer_rule) a customer the API could not serve
    └── ApiError                     (shared.api.errors) an HTTP answer: status, stable code, message

Anything else that escapes (an SDK's AzureError, OSError, a bug) is not ours and is reported as such; the
job wraps Blob Storage's errors in StorageError to say which step failed.
Messages name settings, secrets, blobs and service codes: never a secret's value, a token or customer data.
"""

from __future__ import annotations


class SnapshotAppError(Exception):
    """Root of the errors this app raises for conditions it detects itself."""


class SettingsError(SnapshotAppError):
    """One or more settings are missing or invalid; the message lists every problem."""


class SecretsError(SnapshotAppError):
    """A credential could not be read or written; the message names it, never its value."""


class PartnerCenterError(SnapshotAppError):
    """Partner Center or Entra ID refused a request, or answered something we cannot trust.

    `status` is the HTTP status and `code` the service's error code, when there was an answer."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DeadlineExceeded(PartnerCenterError):
    """The run ran out of time before the last page."""


class SnapshotStoreError(SnapshotAppError):
    """The snapshot container holds something the layout does not allow, or would after this write."""


class ManifestError(SnapshotStoreError):
    """latest.json exists but is not a manifest we wrote."""

    etag: str | None = None  # of that latest.json, when it was read from storage


class SnapshotExistsError(SnapshotStoreError):
    """A snapshot with this name exists already; snapshots are never overwritten."""


class PublishConflictError(SnapshotStoreError):
    """latest.json changed under every attempt to publish; the committed snapshot stays unpublished."""


class SnapshotWithheldError(SnapshotAppError):
    """The run found fewer customers than the previous published snapshot by more than
    SNAPSHOT_MAX_DROP_PERCENT: its snapshot and change record are kept as evidence, latest.json is not
    moved, and the run fails so that the failure alert fires."""


class NothingToCompareError(SnapshotWithheldError):
    """latest.json cannot be read and neither can any `.published` marker (which hold the manifests
    latest.json had): the completeness guard has no count to compare with, so the run publishes nothing
    (it fails closed) until an operator repairs latest.json or turns the guard off."""


class SnapshotFormatError(SnapshotStoreError):
    """A stored snapshot is not a complete JSON document in the one-customer-per-line layout
    (or its gzip stream is damaged)."""


class StorageError(SnapshotStoreError):
    """Blob Storage refused or did not answer; the message names the step (reading latest.json, storing
    page N, committing, publishing) and the service's status and error code, on one line."""
