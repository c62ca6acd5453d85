"""The Teams card as a test reads it: checked against the Adaptive Card 1.5 schema, its texts collected."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs

from shared.notify.teams import (
    CARD_CONTENT_TYPE,
    MAX_MESSAGE_BYTES,
)
from tests.support.paths import DATA

SCHEMA_FILE = DATA / "adaptive-card-1.5.schema.json"


SCHEMA = json.loads(SCHEMA_FILE.read_text())


VALIDATOR = jsonschema_rs.validator_for(SCHEMA)


def card_of(message: bytes) -> dict[str, Any]:
    """The card of a Workflows message, after checking the message, the schema and the size."""
    assert len(message) <= MAX_MESSAGE_BYTES, len(message)
    envelope = json.loads(message)
    assert envelope["type"] == "message"
    [attachment] = envelope["attachments"]
    assert attachment["contentType"] == CARD_CONTENT_TYPE
    card = attachment["content"]
    errors = [error.message[:300] for error in VALIDATOR.iter_errors(card)]
    assert not errors, errors
    assert float(card["version"]) <= 1.5
    for element in walk(card):  # no element newer than 1.5 (the schema annotates each with its version)
        since = SCHEMA["definitions"][element["type"]].get("version", "1.0")
        assert tuple(map(int, since.split("."))) <= (1, 5), element["type"]
    return card


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "type" in node:
            yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def markdown_texts(card: dict[str, Any]) -> list[str]:
    """Every text a Teams client renders as Markdown: TextBlocks, fact values, fallbackText."""
    texts = [card.get("fallbackText", "")]
    for element in walk(card):
        if element["type"] == "TextBlock":
            texts.append(element["text"])
        elif element["type"] == "FactSet":
            texts += [fact["title"] + fact["value"] for fact in element["facts"]]
    return texts


def plain_texts(card: dict[str, Any]) -> str:
    return "".join(e["text"] for e in walk(card) if e["type"] == "TextRun")


def all_text(card: dict[str, Any]) -> str:
    return "\n".join(markdown_texts(card)) + "\n" + plain_texts(card)
