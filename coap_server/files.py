"""Files written whole or not at all, and made durable, for the edge and the hub alike (a key's companions:
the hub's last signed checkpoint, the edge's held hub checkpoint, journals rewritten)."""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, data: bytes) -> None:
    """Replace `path` with `data` whole or not at all: a temporary file beside it, fsync'd, renamed over it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def sync_dir(path: Path) -> None:
    """Make a file's creation or rename durable: the directory entry is data too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
