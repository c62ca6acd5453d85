"""docs/notifications.md: its Python receivers verify what the app signs and refuse anything else, and its
example request is what the app sends for that batch. (The PowerShell function is not run here: no
PowerShell on the test machines.)"""

from __future__ import annotations

import json
import re

import pytest
from standardwebhooks import WebhookVerificationError

from shared.changes.events import cloud_event
from shared.notify.webhooks import Signer, batches
from shared.signing_secret import new_secret
from tests.support.paths import REPO

DOC = (REPO / "docs" / "notifications.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


def receivers() -> dict[str, object]:
    found: dict[str, object] = {}
    for code in blocks("python"):
        exec(compile(code, "docs/notifications.md", "exec"), found)  # noqa: S102 - the doc's own example
    return found


def signed(secret: str) -> tuple[bytes, dict[str, str], list[dict]]:
    event = cloud_event(
        "partnercenter.customer.added", "c1", "2026-11-24T02:00:00Z", "/s", {"id": "c1"}, "snap"
    )
    batch = next(batches([event]))
    return batch.body, Signer(secret).headers(batch.webhook_id, batch.body), [json.loads(event)]


@pytest.mark.parametrize("name", ["events_of", "verify"])
def test_the_python_receivers_of_the_doc_verify_and_refuse(name):
    check = receivers()[name]
    secret = new_secret()
    body, headers, events = signed(secret)
    assert check(secret, body, headers) == events
    refusals = [
        (secret, body + b" ", headers),
        (new_secret(), body, headers),
        (secret, body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 3600)}),
    ]
    for other_secret, other_body, other_headers in refusals:
        with pytest.raises((WebhookVerificationError, ValueError)):
            check(other_secret, other_body, other_headers)


def test_the_example_request_is_what_the_app_sends_for_that_batch():
    example = next(block for block in blocks("json") if '"specversion"' in block)
    events = [json.dumps(event, ensure_ascii=False, separators=(",", ":")) for event in json.loads(example)]
    batch = next(batches(events))
    secret = re.search(r"`(whsec_[A-Za-z0-9+/=]+)`", DOC).group(1)
    http = next(block for block in blocks("http"))
    shown = dict(line.split(": ", 1) for line in http.splitlines()[2:] if ": " in line)
    expected = Signer(secret).headers(batch.webhook_id, batch.body, timestamp=int(shown["webhook-timestamp"]))
    assert {name: shown[name] for name in expected} == expected
    assert shown["Content-Type"] == "application/cloudevents-batch+json"
    assert receivers()["verify"](secret, batch.body, shown, tolerance=10**10) == json.loads(example)
    for event, again in zip(json.loads(example), events, strict=True):
        # The example ids are the ones the app derives for those customers and that snapshot.
        derived = cloud_event(
            event["type"],
            event["subject"],
            event["time"],
            event["source"],
            event["data"],
            "snapshots/2026/11/24/customers-20261124T020000Z.json",
        )
        assert derived == again
