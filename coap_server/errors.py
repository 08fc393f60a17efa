"""The one place where typed errors become CoAP 4.xx/5.xx responses with a CBOR diagnostic {code, message}."""

from __future__ import annotations

import logging

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code

log = logging.getLogger("jejak.coap")

CBOR = 60  # application/cbor

# Stable error code -> CoAP response code. Codes come from ledger.errors, edge.errors and this module.
CODES: dict[str, Code] = {
    # the request itself is wrong
    "BAD_CBOR": Code.BAD_REQUEST,
    "BAD_REQUEST": Code.BAD_REQUEST,
    "MALFORMED": Code.BAD_REQUEST,
    "SYNC_PROTOCOL": Code.BAD_REQUEST,
    "INVALID_SIGNATURE": Code.BAD_REQUEST,
    "UNKNOWN_KIND": Code.UNPROCESSABLE_ENTITY,
    "UNSUPPORTED_FORMAT": Code.UNSUPPORTED_CONTENT_FORMAT,
    "NOT_ACCEPTABLE": Code.NOT_ACCEPTABLE,
    "TOO_LARGE": Code.REQUEST_ENTITY_TOO_LARGE,
    "LIMIT_EXCEEDED": Code.REQUEST_ENTITY_TOO_LARGE,
    "NOT_FOUND": Code.NOT_FOUND,
    "METHOD_NOT_ALLOWED": Code.METHOD_NOT_ALLOWED,
    # the request is fine but the log cannot take it
    "BROKEN_CHAIN": Code.CONFLICT,
    "FORK_DETECTED": Code.CONFLICT,
    "DEVICE_BLOCKED": Code.FORBIDDEN,
    "UNKNOWN_KEY": Code.FORBIDDEN,
    "UNKNOWN_DEVICE": Code.FORBIDDEN,
    "REVOKED_KEY": Code.FORBIDDEN,
    "WRONG_DEVICE": Code.FORBIDDEN,
    # this node cannot take anything right now: retry later (Max-Age says when)
    "BUSY": Code.SERVICE_UNAVAILABLE,
    "STORE_FULL": Code.SERVICE_UNAVAILABLE,
    "SHUTTING_DOWN": Code.SERVICE_UNAVAILABLE,
    "STORE_ERROR": Code.INTERNAL_SERVER_ERROR,
    "INTERNAL": Code.INTERNAL_SERVER_ERROR,
}
RETRY_AFTER_S = {"BUSY": 1, "STORE_FULL": 60, "SHUTTING_DOWN": 5}


class RequestError(Exception):
    """A request this server refuses; `code` is one of CODES."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TooLarge(RequestError):
    code = "TOO_LARGE"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


def diagnostic(exc: BaseException) -> tuple[str, str, str | None]:
    """(code, message, hint) of any exception; unknown exceptions are INTERNAL and logged."""
    code = getattr(exc, "code", None)
    if not isinstance(code, str) or code not in CODES:
        log.error("internal error answering a request: %r", exc)
        return "INTERNAL", "internal error; the server log has the details", None
    message = getattr(exc, "message", None) or str(exc)
    return code, message, getattr(exc, "hint", None)


def error_response(exc: BaseException) -> aiocoap.Message:
    """The CoAP response for an error: the mapped code and a CBOR body {code, message[, hint]}."""
    code, message, hint = diagnostic(exc)
    body = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    response = aiocoap.Message(code=CODES[code], content_format=CBOR, payload=cbor2.dumps(body))
    if code in RETRY_AFTER_S:
        response.opt.max_age = RETRY_AFTER_S[code]
    if isinstance(exc, TooLarge):
        response.opt.size1 = exc.limit
    return response


class CoapError(Exception):
    """What the client raises for an error response: the server's stable code and its message."""

    def __init__(self, code: str, message: str, *, coap_code: str = "", hint: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.coap_code = coap_code
        self.hint = hint

    @classmethod
    def from_response(cls, response: aiocoap.Message) -> CoapError:
        try:
            body = cbor2.loads(response.payload)
            if isinstance(body, dict) and isinstance(body.get("code"), str):
                return cls(body["code"], str(body.get("message", "")), coap_code=str(response.code),
                           hint=body.get("hint"))
        except Exception:  # a foreign server's plain-text diagnostic
            pass
        return cls(response.code.name, response.payload[:200].decode(errors="replace"),
                   coap_code=str(response.code))
