"""Holding an answer to the hub's OpenAPI document (hub/apidoc.py) with no field the document does not name, so a
field renamed or added in a handler fails the test that fetched it."""

from __future__ import annotations

from typing import Any

import jsonschema

from hub.apidoc import ROUTES


def strict(schema: Any) -> Any:
    """`schema` with every described object closed: a field the document does not name fails validation."""
    if isinstance(schema, list):
        return [strict(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def problems(schema: dict[str, Any], value: Any) -> list[str]:
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=str)
    return [f"at {list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5]]


def assert_documented(method: str, path: str, status: int, answer: Any, body: Any = None) -> None:
    """The route's answer has its documented status and fits its answer schema exactly; the request body it
    took (if given) fits the documented request schema."""
    route = ROUTES[(method, path)]
    assert status == route.status, (method, path, status, answer)
    found = problems(strict(route.answer_schema()), answer)
    assert not found, f"{method} {path} answer: {'; '.join(found)}"
    if body is not None:
        assert route.body is not None, f"{method} {path} documents no request body"
        found = problems(route.body[1], body)
        assert not found, f"{method} {path} request body: {'; '.join(found)}"
