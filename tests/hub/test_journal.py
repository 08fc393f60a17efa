"""The hub's journal of JSON lines: appends survive reopening, a line torn by a crash is dropped and the next
append starts a line of its own, rewrites replace the whole file."""

from __future__ import annotations

from pathlib import Path

from hub.journal import Journal


def test_a_torn_line_is_dropped_and_appends_go_on(tmp_path: Path) -> None:
    path = tmp_path / "state" / "j.jsonl"
    journal = Journal(path)
    assert journal.read() == []
    journal.append({"a": 1}, {"a": 2})
    with open(path, "ab") as fh:  # a crash in the middle of a write
        fh.write(b'{"a": 3, "b"')
    assert Journal(path).read() == [{"a": 1}, {"a": 2}]
    journal.append({"a": 4})
    with open(path, "ab") as fh:  # not an object: skipped, the rest read
        fh.write(b"[1, 2]\n")
    assert Journal(path).read() == [{"a": 1}, {"a": 2}, {"a": 4}]
    journal.rewrite([{"a": 5}])
    assert Journal(path).read() == [{"a": 5}] and path.read_bytes() == b'{"a": 5}\n'
    assert not list(path.parent.glob("*.tmp"))
