"""Typed errors of the MBG analytics, each with a stable code for JSON output and exit codes."""

from __future__ import annotations


class MbgError(Exception):
    """Base of every error the MBG analytics raise. `code` is stable; `hint` says what to do, where known."""

    code = "MBG_ERROR"
    exit_code = 40

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


class PlanError(MbgError):
    """A plan (schools, kitchens, rules) that is not usable: bad TOML, unknown kitchen, bad time of day."""

    code = "MBG_PLAN"
    exit_code = 41


class InputError(MbgError):
    """A record or event that MBG analytics cannot use (wrong kind, malformed body, bad field)."""

    code = "MBG_INPUT"
    exit_code = 42


class NotFound(MbgError):
    """A query for a school, kitchen, container or stock item that the hub has never seen."""

    code = "MBG_NOT_FOUND"
    exit_code = 43
