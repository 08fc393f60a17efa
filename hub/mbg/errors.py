"""Typed errors of the MBG analytics, each with a stable code for JSON output and exit codes."""

from __future__ import annotations

from ledger.errors import CodedError


class MbgError(CodedError):
    """Base of every error the MBG analytics raise. `code` is stable; `hint` says what to do, where known."""

    code = "MBG_ERROR"
    coap = "4.00"
    http = 400
    exit_code = 40


class PlanError(MbgError):
    """A plan (schools, kitchens, rules) that is not usable: bad TOML, unknown kitchen, bad time of day."""

    code = "MBG_PLAN"
    coap = "4.00"
    http = 400
    exit_code = 41


class InputError(MbgError):
    """A record or event that MBG analytics cannot use (wrong kind, malformed body, bad field)."""

    code = "MBG_INPUT"
    coap = "4.00"
    http = 400
    exit_code = 42


class NotFound(MbgError):
    """A query for a school, kitchen, container or stock item that the hub has never seen."""

    code = "MBG_NOT_FOUND"
    coap = "4.04"
    http = 404
    exit_code = 43


class BeyondWindow(MbgError):
    """A drill-down (trips, taps, EPCIS) into a day whose scans the read model no longer holds in memory (older
    than its window, or not refilled yet after a restart): the day's deliveries, findings and violations are
    answered from its stored aggregates, its taps are not."""

    code = "MBG_BEYOND_WINDOW"
    coap = "4.04"
    http = 404
    exit_code = 44
