"""A daemon's config file from disk: the hub's and the edge's one way to read it and to check its directories.

The settings themselves are checked by `coap_server.settings` (pure); this is the part that touches the file system.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ledger.errors import CodedError
from ledger.failures import MissingFile

from .settings import settings_from_toml

T = TypeVar("T")


def load_settings(path: str | os.PathLike[str], build: Callable[[dict[str, Any]], T], error: type[CodedError],
                  directories: Callable[[T], Iterable[tuple[str, Path]]] = lambda config: ()) -> T:
    """The config tree `build` makes of the TOML file at `path`. Every refusal names the file; a directory
    setting (`directories` gives each setting's name and path) that is a file, or runs through one, is refused
    here rather than when the daemon first writes there."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise MissingFile(f"config file {path} does not exist", where=str(path),
                          hint="check the path (relative paths start from the current directory)") from None
    except IsADirectoryError:
        raise error(f"config file {path} is a directory", where=str(path),
                    hint="give the TOML file itself, e.g. --config /etc/jejak/hub.toml") from None
    try:
        config = build(settings_from_toml(data, str(path), error))
        check_directories(directories(config), error)
        return config
    except error as exc:  # name the file: an operator may keep several
        message = exc.message if exc.message.startswith(str(path)) else f"{path}: {exc.message}"
        raise error(message, where=exc.where, hint=exc.hint) from None


def check_directories(settings: Iterable[tuple[str, Path]], error: type[CodedError]) -> None:
    """Refuse a directory setting (its name and path) that is a file or runs through one: the daemon would stop
    on it later, when it first writes there, with an error that names no setting."""
    for setting, where in settings:
        for part in (where, *where.parents):
            if part.exists():
                if not part.is_dir():
                    raise error(f"{setting}: expected a directory, but {part} is a file", where=setting,
                                hint=f"point {setting} at a directory (it is created if missing)")
                break
