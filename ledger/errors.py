"""Typed errors of the ledger and the coded-error base every package's errors derive from."""

from __future__ import annotations


class CodedError(Exception):
    """An error with a stable `code` for JSON and exit codes, a message saying expected vs found, and a
    `hint` where there is a fix. Each package derives its own small hierarchy from it.

    Each class declares, once, how it answers on every transport: `coap` (the CoAP response code as
    "class.detail" text, so this module stays free of aiocoap), `http` (the HTTP status), `exit_code` (what a
    command exits with) and `retry_after_s` (how long a client should wait before trying again, if it
    should). The shells render these (coap_server.errors, hub.http); docs/ERRORS.md lists them all, and a
    test holds the two together. One code means one thing everywhere: classes sharing a code declare the
    same answers."""

    code = "ERROR"
    coap = "5.00"
    http = 500
    exit_code = 1
    retry_after_s: int | None = None

    def __init__(self, message: str, *, hint: str | None = None, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.where is not None:
            out["where"] = self.where
        if self.hint is not None:
            out["hint"] = self.hint
        return out

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.where is not None:
            text += f" (at {self.where})"
        return text


class LedgerError(CodedError):
    """Base of every error the ledger raises."""

    code = "LEDGER_ERROR"
    coap = "4.00"
    http = 400
    exit_code = 10


class MalformedRecord(LedgerError):
    """Bytes from outside that are not a well-formed, canonical Jejak structure."""

    code = "MALFORMED"
    coap = "4.00"
    http = 400
    exit_code = 11


class VerificationError(LedgerError):
    """A well-formed structure that does not verify."""

    code = "VERIFICATION_FAILED"
    coap = "4.22"
    http = 422
    exit_code = 12


class BadSignature(VerificationError):
    code = "INVALID_SIGNATURE"
    coap = "4.22"
    http = 422
    exit_code = 13


class BrokenChain(VerificationError):
    """Sequence gap, wrong `prev` link, wrong device, or a record out of order."""

    code = "BROKEN_CHAIN"
    coap = "4.09"
    http = 409
    exit_code = 14


class ForkDetected(VerificationError):
    """Two validly signed records with one device and one sequence number and different ids."""

    code = "FORK_DETECTED"
    coap = "4.09"
    http = 409
    exit_code = 15

    def __init__(self, message: str, *, evidence: object = None, hint: str | None = None,
                 where: str | None = None) -> None:
        super().__init__(message, hint=hint, where=where)
        self.evidence = evidence


class BadProof(VerificationError):
    """An inclusion or consistency proof that does not lead to the claimed root."""

    code = "INVALID_PROOF"
    coap = "4.22"
    http = 422
    exit_code = 16


class BadCheckpoint(VerificationError):
    """A checkpoint whose signature or hub does not hold, or two of one size with different roots."""

    code = "INVALID_CHECKPOINT"
    coap = "4.22"
    http = 422
    exit_code = 17


class SplitView(VerificationError):
    """A hub signed a checkpoint that does not extend one it signed before (a rewritten history, or two views of
    its log). The two checkpoints, and the consistency proof the hub offered, are the evidence."""

    code = "SPLIT_VIEW"
    coap = "4.09"
    http = 409
    exit_code = 22

    def __init__(self, message: str, *, evidence: object = None, hint: str | None = None,
                 where: str | None = None) -> None:
        super().__init__(message, hint=hint, where=where)
        self.evidence = evidence


class UnknownKey(VerificationError):
    """A record signed by a key nobody enrolled or announced (in a bundle: that the hub's own log never approved)."""

    code = "UNKNOWN_KEY"
    coap = "4.03"
    http = 403
    exit_code = 18


class RevokedKey(VerificationError):
    """A record at or past its device's revocation point (the hub's withdraw or revoke decision)."""

    code = "REVOKED_KEY"
    coap = "4.03"
    http = 403
    exit_code = 19


class SyncError(LedgerError):
    """The sync protocol saw a message it cannot act on."""

    code = "SYNC_PROTOCOL"
    coap = "4.00"
    http = 400
    exit_code = 20


class LimitExceeded(SyncError):
    code = "LIMIT_EXCEEDED"
    coap = "4.13"
    http = 413
    exit_code = 21


class OutOfOrder(SyncError):
    """A pushed range that starts past the receiver's log, whose predecessor was refused or did not arrive
    within the wait: the pusher sends again from the receiver's head, one request at a time."""

    code = "OUT_OF_ORDER"
    coap = "4.09"
    http = 409
    exit_code = 22
