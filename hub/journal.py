"""An append-only file of JSON lines beside the store, for what the read models cannot derive again after a
restart (operators' decisions, what subscribers were told, when an alert was first raised)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from coap_server.files import replace_file, sync_dir

log = logging.getLogger("jejak.hub.journal")


class Journal:
    """Each `append` is written and fsync'd before it returns, so what a caller was told is kept is kept
    through a crash. A line cut short by a crash mid-write is dropped when the journal is read."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

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
