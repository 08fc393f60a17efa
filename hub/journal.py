"""An append-only file of JSON lines beside the store, for what the read models cannot derive again after a
restart (operators' decisions, what subscribers were told, when an alert was first raised)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from coap_server.files import replace_file, sync_dir

log = logging.getLogger("jejak.hub.journal")


class Lines(Protocol):
    """A journal of JSON objects, oldest first: a `Journal` file, or the hub's store (`hub.pg.PgJournal`) where
    the hub keeps its state in a database that outlives its host. Each `append` and `rewrite` is durable when it
    returns; a failure is an OSError or a StoreError."""

    @property
    def where(self) -> str:
        """Where the lines are kept, for messages."""
        ...

    def read(self) -> list[dict[str, Any]]: ...
    def read_numbered(self) -> list[tuple[int, dict[str, Any]]]: ...
    def append(self, *items: dict[str, Any]) -> None: ...
    def rewrite(self, items: Iterable[dict[str, Any]]) -> None: ...


def carried_over(kept: Lines, file: Journal) -> Lines:
    """`kept`, holding what the journal `file` held when `kept` was never written: a hub that kept it in a file
    before its store did carries it over once, and the file is renamed `<name>.in-store` (left for the
    operator, never read again)."""
    return carried_from(kept, file.path, file.read)


def carried_from(kept: Lines, path: Path, read: Callable[[], list[dict[str, Any]]]) -> Lines:
    """`carried_over` for a file of any shape: `read` gives its items, asked only when `path` exists."""
    lines = read() if path.exists() else []
    if lines and not kept.read():
        kept.rewrite(lines)
        log.info("%s: %d lines carried over to %s", path, len(lines), kept.where)
    if path.exists():
        os.replace(path, path.with_name(path.name + ".in-store"))
        sync_dir(path.parent)
    return kept


class Journal:
    """Each `append` is written and fsync'd before it returns, so what a caller was told is kept is kept
    through a crash. A line cut short by a crash mid-write is dropped when the journal is read."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self) -> list[dict[str, Any]]:
        """Every whole line, oldest first. A torn last line is cut off the file, so the next append starts
        on a line of its own."""
        return [item for _, item in self.read_numbered()]

    def read_numbered(self) -> list[tuple[int, dict[str, Any]]]:
        """As `read`, each line with its number in the file (from 1), for messages about a line's content."""
        with self._lock:
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return []
            whole = data[:data.rfind(b"\n") + 1]
            if len(whole) < len(data):
                log.warning("%s: a line cut short at byte %d (a crash while writing) is dropped", self.path,
                            len(whole))
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(whole))
                    os.fsync(fh.fileno())
        out = []
        for n, line in enumerate(whole.splitlines(), 1):
            try:
                item = json.loads(line)
            except (UnicodeDecodeError, ValueError):
                item = None
            if not isinstance(item, dict):
                log.warning("%s:%d: not a JSON object; skipped", self.path, n)
                continue
            out.append((n, item))
        return out

    def append(self, *items: dict[str, Any]) -> None:
        if not items:
            return
        data = b"".join(json.dumps(i, ensure_ascii=False, sort_keys=True).encode() + b"\n" for i in items)
        with self._lock:
            new = not self.path.exists()
            if new:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if new:
                sync_dir(self.path.parent)

    def rewrite(self, items: Iterable[dict[str, Any]]) -> None:
        """Replace the whole journal at once (temporary file, fsync, rename): to drop what is no longer needed."""
        data = b"".join(json.dumps(i, ensure_ascii=False, sort_keys=True).encode() + b"\n" for i in items)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(self.path, data)
