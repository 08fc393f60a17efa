"""One log format for edge and hub: a JSON object per line (python-json-logger), the same fields, RFC 3339 UTC time.

Fields on every line: `time` (RFC 3339, UTC, milliseconds), `level`, `logger`, `msg`, `service` ("edge" or
"hub"); a record's `extra={"fields": {...}}` adds its own keys; a traceback becomes the `exc` string. The
library does the JSON escaping, so quotes, newlines and tracebacks in a message never break a line, which is
what journald (one entry per line on stderr) and log shippers need.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

_FIELDS = "%(levelname)s %(name)s %(message)s"
_RENAMED = {"levelname": "level", "name": "logger", "message": "msg", "exc_info": "exc"}


def rfc3339(created: float) -> str:
    """A log record's time as RFC 3339 in UTC with milliseconds: 2026-12-01T23:50:01.123Z."""
    moment = dt.datetime.fromtimestamp(created, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JejakJsonFormatter(JsonFormatter):
    """python-json-logger with Jejak's field names; a record's `fields` dict is merged into the line."""

    def __init__(self, service: str) -> None:
        super().__init__(_FIELDS, rename_fields=_RENAMED, static_fields={"service": service},
                         json_ensure_ascii=False, json_default=str, reserved_attrs=[*_reserved(), "fields"])

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = rfc3339(record.created)
        super().add_fields(log_data, record, message_dict)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            log_data.update(fields)


class OneLineFormatter(logging.Formatter):
    """The text format (`[log] format = "text"`), one line per record as the JSON one: line breaks and other
    control characters in a message are escaped, since a message may quote what a request sent (a CoAP path, a
    device's name), and a line break there wrote a log line of the sender's making. A traceback (`-v`) keeps
    its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                                 for c in record.message)
        return super().formatMessage(record)


def _reserved() -> list[str]:
    from pythonjsonlogger.core import RESERVED_ATTRS

    return list(RESERVED_ATTRS)


def setup_logging(service: str, *, level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Send Jejak's loggers (and aiocoap's warnings) to `stream` (stderr) in the one format, replacing others."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JejakJsonFormatter(service) if fmt == "json" else
                         OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # libraries: warnings and errors only
    jejak = logging.getLogger("jejak")
    for old in list(jejak.handlers):
        jejak.removeHandler(old)
    jejak.setLevel(level.upper())
    jejak.propagate = True
