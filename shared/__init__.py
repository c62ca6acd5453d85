"""Application package of the Partner Center customer snapshot function app.

Everything the triggers in function_app.py do lives here; nothing here imports function_app, tests,
devstack or bench. Each layer imports only from the layers below it (import-linter, `make lint`;
docs/architecture.md draws the map):

    api/               the HTTP answers (one composition root)
    job/               the nightly run (the other composition root)
    notify/            the Teams card and the signed webhooks
    changes/           change records, the completeness guard, the change-event outbox
    snapshots/         the snapshot document, its writer, its index, publishing
    partner_center/    the Partner Center client: tokens and every page of customers
    storage/           the only code that talks to Blob Storage and the queue: layout, blocks, reader
    transport/         the only owner of the HTTP library: retries, Retry-After, bounded bodies
    settings/          every app setting, validated once (and the only reader of the environment,
                       with identity.py)
    secrets.py         the Partner Center and notification credentials: Key Vault or app settings
    identity.py        the managed identity (or developer) credential for Azure SDKs
    errors.py          the one error tree, and which failures are worth retrying
    events.py          every log event's name, and the one way to log one
    customer_rule.py   what a storable, indexable customer is
    customer_id.py     one rule for a customer id on every route and in the change records
    text.py            case- and accent-folding for search; domain keys
    jsonenc.py         compact JSON, the one encoder of what we store and answer
    signing_secret.py  the webhook signing secret's form
    redact.py          secrets scrubbed from anything logged
    hosts.py           loopback hosts (the only ones allowed plain http)
    gc_pause.py        the cyclic GC paused around bulk parsing
"""
