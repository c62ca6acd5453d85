"""Checking an answer against the OpenAPI document's schemas."""

from __future__ import annotations

import json
from typing import Any

from shared.api.openapi import DOCUMENT


def document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema (draft 4): `nullable` becomes a null type."""
    if isinstance(node, list):
        return [json_schema(value) for value in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


def assert_documented(payload: Any, name: str) -> None:
    """`payload` is valid against components/schemas/<name>, and these schemas name every field it has."""
    import jsonschema_rs

    components = json_schema(document()["components"])
    for strict in (name, "UnknownStep", "ChangeEvent"):
        components["schemas"][strict].setdefault("additionalProperties", False)
    root = {"$ref": f"#/components/schemas/{name}", "components": components}
    jsonschema_rs.Draft4Validator(root).validate(payload)
