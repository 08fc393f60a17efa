"""The one place where typed errors become CoAP 4.xx/5.xx responses with a CBOR diagnostic {code, message}.

Every error class declares its own CoAP code (ledger.errors.CodedError); this module only renders it, so a
resource never picks a response code for an error itself.
"""

from __future__ import annotations

import logging

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code

from ledger.errors import CodedError

log = logging.getLogger("jejak.coap")

CBOR = 60  # application/cbor


class RequestError(CodedError):
    """A request this server refuses for what it says; subclasses name the reason."""

    code = "BAD_REQUEST"
    coap = "4.00"
    http = 400


class BadCbor(RequestError):
    """A payload that is empty, not well-formed CBOR, or has bytes after its item."""

    code = "BAD_CBOR"
    coap = "4.00"
    http = 400


class UnknownKind(RequestError):
    """An observation of a kind nobody may submit (unknown, or made by the device itself)."""

    code = "UNKNOWN_KIND"
    coap = "4.22"
    http = 422


class UnsupportedFormat(RequestError):
    """A Content-Format other than application/cbor."""

    code = "UNSUPPORTED_FORMAT"
    coap = "4.15"
    http = 415


class NotFound(RequestError):
    """A path or log this node does not have."""

    code = "NOT_FOUND"
    coap = "4.04"
    http = 404
    exit_code = 51


class TooLarge(RequestError):
    """A request over a size limit; `limit` (bytes) goes into Size1 when the limit is in bytes."""

    code = "TOO_LARGE"
    coap = "4.13"
    http = 413

    def __init__(self, message: str, *, limit: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.limit = limit


class IncompleteBody(RequestError):
    """A block of a request body (CoAP Block1) that does not follow the blocks before it: a gap, an overlap, no
    block 0, or a body forgotten after waiting too long for its next block."""

    code = "INCOMPLETE_BODY"
    coap = "4.08"
    http = 400


class BodyTooSlow(RequestError):
    """An HTTP request body that came slower than the server waits for (coap_server/httpd.py `BodyPace`): the
    request is answered so, if nothing was answered yet, and its connection closed."""

    code = "BODY_TOO_SLOW"
    coap = "4.08"
    http = 408


class TooManyConnections(CodedError):
    """An HTTP connection over the server's limits, in all or from one address (coap_server/limits.py): answered
    before its request is read, and closed."""

    code = "TOO_MANY_CONNECTIONS"
    coap = "5.03"
    http = 503
    exit_code = 78
    retry_after_s = 10


class TooManyStreams(CodedError):
    """A live event stream (the hub's /api/events) over the hub's limits, in all or from one client."""

    code = "TOO_MANY_STREAMS"
    coap = "5.03"
    http = 503
    exit_code = 79
    retry_after_s = 30


class Internal(CodedError):
    """What any unexpected exception is answered with; the details go to the server log, not the peer."""

    code = "INTERNAL"
    coap = "5.00"
    http = 500


def coap_code(text: str) -> Code:
    """aiocoap's Code of a "class.detail" text as the error classes declare it ("4.04" -> NOT_FOUND)."""
    klass, _, detail = text.partition(".")
    return Code((int(klass) << 5) | int(detail))


def coded(exc: BaseException) -> CodedError:
    """The typed error to answer with: `exc` itself, or INTERNAL (logged) for anything untyped."""
    if isinstance(exc, CodedError):
        return exc
    log.error("internal error answering a request: %r", exc, exc_info=exc)
    return Internal("internal error; the server log has the details")


def error_response(exc: BaseException) -> aiocoap.Message:
    """The CoAP response for an error: its declared code and a CBOR body {code, message[, where, hint]}."""
    err = coded(exc)
    response = aiocoap.Message(code=coap_code(err.coap), content_format=CBOR, payload=cbor2.dumps(err.to_dict()))
    if err.retry_after_s is not None:
        response.opt.max_age = err.retry_after_s
    if isinstance(err, TooLarge) and err.limit is not None:
        response.opt.size1 = err.limit
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

    def coded(self, source: str, hint: str | None = None) -> CodedError:
        """The coded error a command reports for this answer from `source`: of the class that declares its code
        (one code answers one way everywhere, so the exit code is that code's), with the server's message and
        `hint` or the server's; INTERNAL for a code no class here declares."""
        found = [CodedError]
        while found and found[0].code != self.code:
            found = found[1:] + found[0].__subclasses__()
        err = (found[0] if found else Internal).__new__(found[0] if found else Internal)
        CodedError.__init__(err, f"{source} answered {self.code}: {self.message}", hint=hint or self.hint)
        return err


def describe_failure(exc: BaseException) -> str:
    """A failed request in words for a log line or `edge status`. aiocoap's transport errors print only their
    class ("Network error: NetworkError"); the OS error under them and aiocoap's own advice say what happened
    and what to check."""
    if isinstance(exc, TimeoutError):
        return "TimeoutError: no answer in time (the node is down or busy, or a firewall drops CoAP)"
    if isinstance(exc, aiocoap.error.Error):
        cause = exc.__cause__
        what = (cause.strerror or str(cause)) if isinstance(cause, OSError) else str(cause or exc)
        advice = exc.extra_help() if isinstance(exc, aiocoap.error.HelpfulError) else None
        return f"{type(exc).__name__}: {what}" + (f"; {advice}" if advice else "")
    return f"{type(exc).__name__}: {exc}"
