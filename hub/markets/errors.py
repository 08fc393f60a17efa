"""Typed errors of the market analytics, each with a stable code that the hub's JSON answers carry."""

from __future__ import annotations

from ledger.errors import CodedError


class MarketError(CodedError):
    """Base of every error hub.markets raises. `code` is stable; `hint` says what to do, where known."""

    code = "MARKET_ERROR"
    coap = "4.00"
    http = 400
    exit_code = 60


class BadObservation(MarketError):
    """An observation, reading or note whose fields do not hold (wrong type, negative price, ...)."""

    code = "BAD_OBSERVATION"
    coap = "4.00"
    http = 400
    exit_code = 61


class BadUnit(BadObservation):
    """A price in a unit that cannot be converted to its commodity's catalogue unit (per kg of oil sold by the
    litre, per ikat, per karung)."""

    code = "BAD_UNIT"
    coap = "4.00"
    http = 400
    exit_code = 65


class BadSeries(MarketError):
    """A series too short or too broken for the analysis asked of it."""

    code = "BAD_SERIES"
    coap = "4.22"
    http = 422
    exit_code = 62


class BadInputFile(MarketError):
    """A CSV or data file that does not have the columns or values its format promises."""

    code = "BAD_INPUT_FILE"
    coap = "4.22"
    http = 422
    exit_code = 63


class NotFound(MarketError):
    """A market, commodity, series or quarantined observation that the service does not know."""

    code = "NOT_FOUND"
    coap = "4.04"
    http = 404
    exit_code = 51


class DecisionConflict(MarketError):
    """An operator decision that does not apply to the quarantined value's current state."""

    code = "DECISION_CONFLICT"
    coap = "4.09"
    http = 409
    exit_code = 64
