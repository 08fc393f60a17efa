"""Typed errors of the ledger, each with a stable code that JSON output and exit codes use."""

from __future__ import annotations


class CodedError(Exception):
    """An error with a stable `code` for JSON and exit codes, a message saying expected vs found, and a
    `hint` where there is a fix. Each package derives its own small hierarchy from it."""

    code = "ERROR"
    exit_code = 1

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
    exit_code = 10


class MalformedRecord(LedgerError):
    """Bytes from outside that are not a well-formed, canonical Jejak structure."""

    code = "MALFORMED"
    exit_code = 11


class VerificationError(LedgerError):
    """A well-formed structure that does not verify."""

    code = "VERIFICATION_FAILED"
    exit_code = 12


class BadSignature(VerificationError):
    code = "INVALID_SIGNATURE"
    exit_code = 13


class BrokenChain(VerificationError):
    """Sequence gap, wrong `prev` link, wrong device, or a record out of order."""

    code = "BROKEN_CHAIN"
    exit_code = 14


class ForkDetected(VerificationError):
    """Two validly signed records with one device and one sequence number and different ids."""

    code = "FORK_DETECTED"
    exit_code = 15

    def __init__(self, message: str, *, evidence: object = None, hint: str | None = None,
                 where: str | None = None) -> None:
        super().__init__(message, hint=hint, where=where)
        self.evidence = evidence


class BadProof(VerificationError):
    """An inclusion or consistency proof that does not lead to the claimed root."""

    code = "INVALID_PROOF"
    exit_code = 16


class BadCheckpoint(VerificationError):
    """A checkpoint whose signature, size or root does not hold, or two checkpoints that disagree."""

    code = "INVALID_CHECKPOINT"
    exit_code = 17


class UnknownKey(VerificationError):
    """A record signed by a key nobody enrolled or announced."""

    code = "UNKNOWN_KEY"
    exit_code = 18


class RevokedKey(VerificationError):
    """A record signed after its key was revoked or rotated away."""

    code = "REVOKED_KEY"
    exit_code = 19


class SyncError(LedgerError):
    """The sync protocol saw a message it cannot act on."""

    code = "SYNC_PROTOCOL"
    exit_code = 20


class LimitExceeded(SyncError):
    code = "LIMIT_EXCEEDED"
    exit_code = 21
