"""Edge and hub log through one JSON formatter: same fields, RFC 3339 UTC times, valid JSON whatever the message."""

from __future__ import annotations

import io
import json
import logging
import re

from coap_server.logs import setup_logging

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def lines(service: str) -> list[dict[str, object]]:
    out = io.StringIO()
    setup_logging(service, stream=out)
    log = logging.getLogger(f"jejak.{service}")
    log.info('refused "unknown" device %s\nsecond line \\ with {braces}', "ab12", extra={"fields": {"seq": 7}})
    try:
        raise ValueError('a "quoted" failure')
    except ValueError:
        log.exception("checkpoint failed")
    logging.getLogger("coap-server").info("aiocoap chatter stays out")
    text = out.getvalue()
    assert text.count("\n") == 2, text  # one line per record: a newline in a message is escaped
    return [json.loads(line) for line in text.splitlines()]


def test_edge_and_hub_lines_have_the_same_fields_and_times() -> None:
    edge, hub = lines("edge"), lines("hub")
    for ours in (edge, hub):
        info, error = ours
        assert RFC3339.fullmatch(str(info["time"])), info["time"]
        assert info["msg"] == 'refused "unknown" device ab12\nsecond line \\ with {braces}'
        assert info["seq"] == 7 and info["level"] == "INFO"
        assert error["level"] == "ERROR" and 'ValueError: a "quoted" failure' in str(error["exc"])
    assert [set(e) for e in edge] == [set(h) for h in hub]
    assert {e["service"] for e in edge} == {"edge"} and {h["service"] for h in hub} == {"hub"}
    assert {e["logger"] for e in hub} == {"jejak.hub"}
