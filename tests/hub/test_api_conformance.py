"""The running hub against its own OpenAPI document (schemathesis): no 5xx, and every answer's status, media
type and body as documented, for inputs generated from the documented parameters and bodies."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.running_hub import demo_hub

# COSE and CBOR bodies travel as the bytes generated for them (schema: binary string).
schemathesis.serializer.alias("application/cose", "application/octet-stream")
schemathesis.serializer.alias("application/cbor", "application/octet-stream")

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def hub_url(tmp_path_factory: pytest.TempPathFactory):
    with demo_hub(tmp_path_factory.mktemp("conformance")) as url:
        yield url


def test_every_route_answers_as_documented(hub_url: str) -> None:
    # The live event stream and the WebSockets never end, and the demo's own routes are not the hub's API.
    schema = schemathesis.openapi.from_url(hub_url + "/api/openapi.json").exclude(
        path_regex=r"^/(api/(events|demo|alerts/ws)|ws/)")
    failures, tested = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_as_documented(case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            answers_as_documented()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; failures reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
        tested += 1
    assert tested >= 55, f"only {tested} operations in the document"
    assert not failures, "\n\n".join(failures)
