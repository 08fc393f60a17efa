"""How a command's failure reads: the operator's environment errors (ports, permissions, peers) and one line each.

Every command (`jejak ...`, `jejak-verify`, `jejak edge ...`) ends a failure the same way: the error becomes a
`CodedError` (`as_coded`), its one JSON line goes to stderr (`error_line`) and the class's exit code is the
process's. Pure: nothing here prints, binds or opens; the shells do that and raise these classes.
"""

from __future__ import annotations

import errno
import json
import traceback

from .errors import CodedError


class UsageError(CodedError):
    """A command line that cannot be run as written: a missing or unreadable argument file, a bad value."""

    code = "USAGE"
    coap = "4.00"
    http = 400
    exit_code = 2


class PortInUse(CodedError):
    """A server port (UDP or TCP) that another process holds; the server refuses to share it."""

    code = "PORT_IN_USE"
    coap = "5.00"
    http = 500
    exit_code = 80


class BadAddress(CodedError):
    """A server address this machine cannot bind: a name that does not resolve, or an address that is on none of
    its interfaces."""

    code = "BAD_ADDRESS"
    coap = "5.00"
    http = 500
    exit_code = 88


class NoPermission(CodedError):
    """A file or directory this process may not read or write (data dir, key, store, output file)."""

    code = "NO_PERMISSION"
    coap = "5.00"
    http = 500
    exit_code = 81


class NotInstalled(CodedError):
    """A command that needs a part of Jejak this machine did not install (an extra: `jejak[hub]` on an edge)."""

    code = "NOT_INSTALLED"
    coap = "5.00"
    http = 500
    exit_code = 92


class MissingFile(CodedError):
    """A file a command was told to read that does not exist (config, plan, bundle)."""

    code = "NO_SUCH_FILE"
    coap = "5.00"
    http = 500
    exit_code = 84


class Unreachable(CodedError):
    """A hub, peer or edge that did not answer: refused, timed out, or a name that does not resolve."""

    code = "UNREACHABLE"
    coap = "5.04"
    http = 504
    exit_code = 82


class OutputClosed(CodedError):
    """The reader of this command's output went away (`... | head`); what was written stays written."""

    code = "OUTPUT_CLOSED"
    coap = "5.00"
    http = 500
    exit_code = 83


class Unexpected(CodedError):
    """A failure no class describes: a bug. `-v` shows its traceback."""

    code = "INTERNAL"
    coap = "5.00"
    http = 500
    exit_code = 1


def port_in_use(setting: str, host: str, port: int, transport: str) -> PortInUse:
    """The error a server raises when `port` on `host` is taken for `transport` ("UDP" or "TCP")."""
    return PortInUse(f"{transport} port {port} on {host} is in use by another process",
                     where=setting,
                     hint=f"stop the other server (find it with: ss -lunpt 'sport = :{port}'), or set {setting} "
                          f"to a free port")


def bad_address(setting: str, host: str, reason: str) -> BadAddress:
    """The error a server raises when it cannot bind `host`, the value of `setting`."""
    return BadAddress(f"{setting} = {host!r}: this machine cannot listen there ({reason})", where=setting,
                      hint=f"set {setting} to an address of this machine: 127.0.0.1 (this machine only), 0.0.0.0 or "
                           ":: (every interface), or one that `ip -brief address` lists")


def as_coded(exc: BaseException) -> CodedError:
    """The coded error a command reports for `exc`: itself if it is one, else the class of its cause."""
    if isinstance(exc, CodedError):
        return exc
    reason = getattr(exc, "reason", None)
    if isinstance(exc, OSError) and isinstance(reason, OSError):  # urllib's URLError wraps the socket's error
        return as_coded(reason)
    if isinstance(exc, BrokenPipeError):
        return OutputClosed("the reader of this command's output closed it",
                            hint="nothing is wrong with the data; pipe into a reader that takes everything")
    if isinstance(exc, PermissionError):
        name = exc.filename or "a file"
        return NoPermission(f"{name}: permission denied ({exc.strerror})", where=str(exc.filename or ""),
                            hint="run as the user that owns it, give that user access (chown/chmod), or point "
                                 "the setting at a directory this user owns")
    if isinstance(exc, (ConnectionError, TimeoutError)) or (
            isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)):
        return Unreachable(f"no answer: {exc}", hint="check that the other side runs and the address is right")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return PortInUse(str(exc), hint="stop the other server or choose a free port")
    if isinstance(exc, FileNotFoundError):
        return MissingFile(f"{exc.filename}: no such file or directory", where=str(exc.filename or ""),
                           hint="check the path (relative paths start from the current directory)")
    return Unexpected(f"unexpected {type(exc).__name__}: {exc}",
                      hint="run again with -v for the traceback, and report it")


def error_line(error: CodedError) -> str:
    """The one line a command writes to stderr when it stops on `error`."""
    return json.dumps({"error": error.to_dict()}, ensure_ascii=False)


def failure(exc: BaseException, *, verbose: bool) -> tuple[int, str]:
    """What a command does when `exc` stops it: the exit code and the text for stderr (one line; with `-v`
    the traceback before it)."""
    error = as_coded(exc)
    text = error_line(error)
    if verbose:
        text = "".join(traceback.format_exception(exc)) + text
    return error.exit_code, text
