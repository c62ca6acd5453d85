"""`make serve` and `make demo`: the notification receivers, wired to the job, printing what they get.

`local_notifications(stack, out, cards_dir)` starts the Teams stand-in and a webhook receiver
(devstack/receivers.py), puts the Teams workflow URL and the signing secret in the Key Vault stand-in (as
in Azure: secrets `teams-workflow-url`, `webhook-signing-secret`) and WEBHOOK_URLS in the environment, so
every run of the job in this process sends to them. Each webhook batch is printed with whether its
signature verified (the receiver checks it with the reference library, standardwebhooks) and its events;
each Teams card is printed as text and saved as JSON in `cards_dir`, to open in the Adaptive Cards
Designer (https://adaptivecards.io/designer/).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from devstack.azurite import REPO_ROOT
from devstack.receivers import Received, TeamsWorkflow, WebhookReceiver
from devstack.stack import DevStack

CARDS_DIR = REPO_ROOT / ".demo" / "teams-cards"  # .gitignored, removed by make clean


def card_text(card: Mapping[str, Any]) -> str:
    """An Adaptive Card as plain text: its title and text blocks, its facts, its buttons."""
    lines: list[str] = []
    for element in card.get("body", []):
        kind = element.get("type")
        if kind == "TextBlock":
            lines.append(str(element.get("text", "")))
        elif kind == "FactSet":
            lines += [f"{fact.get('title')}: {fact.get('value')}" for fact in element.get("facts", [])]
        elif kind == "RichTextBlock":
            text = "".join(str(run.get("text", "")) for run in element.get("inlines", []))
            lines.append(("    " if element.get("spacing") == "None" else "  ") + text)
    lines += [f"[{a.get('title')}] {a.get('url')}" for a in card.get("actions", [])]
    return "\n".join(lines)


def event_line(event: Mapping[str, Any]) -> str:
    """One CloudEvent as one line: its type, subject and what it says in a few words."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    kind = str(event.get("type", "?")).removeprefix("partnercenter.")
    if kind in ("customer.added", "customer.removed"):
        said = str(data.get("companyName"))
    elif kind == "customer.changed":
        said = ", ".join(data.get("fields") or {})
    elif kind == "snapshot.withheld":
        said = f"{data.get('dropPercent')}% fewer customers, not published"
    else:
        said = f"{data.get('customerCount')} customers, counts {json.dumps(data.get('counts'))}"
    return f"{kind:<18} {event.get('subject')}  {said}  (id {event.get('id')})"


class _Printer:
    def __init__(self, out: TextIO, cards_dir: Path) -> None:
        self.out = out
        self.cards_dir = cards_dir
        self.cards = 0
        self.lock = threading.Lock()

    def show(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)

    def batch(self, received: Received) -> None:
        webhook_id = received.headers.get("webhook-id")
        if received.status != 204:
            self.show(
                f"\n  Webhook receiver: {received.behaviour}, answered {received.status} ({received.problem})"
            )
            return
        verified = "signature verified (standardwebhooks)" if received.verified else "signature NOT verified"
        batch = received.json()
        count = f"{len(batch)} event" + ("s" if len(batch) != 1 else "")
        lines = [f"\n  Webhook batch {webhook_id}: {count}, {verified}"]
        lines += [f"    {event_line(event)}" for event in batch[:20]]
        if len(batch) > 20:
            lines.append(f"    and {len(batch) - 20} more")
        self.show("\n".join(lines))

    def card(self, received: Received) -> None:
        if received.status != 202:
            self.show(f"\n  Teams stand-in: answered {received.status} ({received.problem})")
            return
        card = received.json()["attachments"][0]["content"]
        with self.lock:
            self.cards += 1
            path = self.cards_dir / f"card-{self.cards}.json"
        self.cards_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
        text = "\n".join("    " + line for line in card_text(card).splitlines())
        self.show(f"\n  Teams card (saved as {path}):\n{text}")


@contextmanager
def local_notifications(
    stack: DevStack, out: TextIO, cards_dir: Path = CARDS_DIR
) -> Iterator[tuple[TeamsWorkflow, WebhookReceiver]]:
    """The two receivers, running and configured for the job's runs in this process (see the module)."""
    printer = _Printer(out, cards_dir)
    tls = stack.tls.ssl_server_context()
    with (
        TeamsWorkflow(tls, on_receive=printer.card) as teams,
        WebhookReceiver(tls, on_receive=printer.batch) as hook,
    ):
        stack.key_vault.set("teams-workflow-url", teams.workflow_url)
        stack.key_vault.set("webhook-signing-secret", hook.secret)
        os.environ["WEBHOOK_URLS"] = hook.endpoint_url
        yield teams, hook
