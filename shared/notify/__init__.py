"""Notifications: the changes of each published run told to people (a Teams card) and to systems (signed
webhooks), with the same trust as the snapshot: nothing leaked, and every delivery's outcome typed.

    digest.py    RunDigest: counts and the first 10 entries per kind of a run's change record, bounded
                 memory (digest_of over shared.changes.store.iter_entries)
    teams.py     the Workflows message with an Adaptive Card 1.5 (changes, changes unknown, quiet night,
                 withheld snapshot), kept under Teams' 28 KB; TeamsWorkflow posts it
    webhooks.py  CloudEvents batches (application/cloudevents-batch+json) signed per Standard Webhooks
                 (whsec_ secrets, a stable webhook-id per batch); WebhookEndpoint posts them
    delivery.py  the one HTTP sender both use: https only (loopback aside), no redirects, bounded time
                 and reads, retries with backoff; Delivered / RetryLater / PermanentFailure
    channels.py  both channels' parts of the change-event outbox (shared/changes/outbox.py), delivered at
                 least once after the snapshot is published, beside the queue's (shared/changes/events.py)

The settings are TEAMS_WORKFLOW_URL (Key Vault `teams-workflow-url`), TEAMS_QUIET_NIGHTS, WEBHOOK_URLS,
WEBHOOK_SIGNING_SECRET (Key Vault `webhook-signing-secret`) and API_PUBLIC_URL (shared/settings.py; the
secrets through shared/secrets.py). docs/notifications.md is the receiver's guide.
"""
