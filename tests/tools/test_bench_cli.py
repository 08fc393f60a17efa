"""`jejak bench --update` replaces the parts it runs and keeps the others' figures."""

import json
import os
import subprocess
import sys

from tests.wait import wait_until
from tools.bench import main
from tools.sync_bench import _cpu_of


def test_update_keeps_the_other_parts(tmp_path):
    out, md = tmp_path / "b.json", tmp_path / "B.md"
    out.write_text(json.dumps({"parts": {"ledger": {"raw_verify_per_s": 12345.0}}}))
    assert main(["--quick", "--only", "markets", "--update", "--json", str(out), "--markdown", str(md)]) == 0
    parts = json.loads(out.read_text())["parts"]
    assert parts["ledger"] == {"raw_verify_per_s": 12345.0}
    assert "seconds" in parts["markets"] and "error" not in parts["markets"]
    table = md.read_text()
    assert "## ledger" in table and "## markets" in table and "12,345" in table


def test_a_part_whose_extra_is_not_installed_is_skipped(tmp_path, monkeypatch):
    # An edge installed without [hub] has no numpy: the hub's market part says so and the rest still runs.
    (tmp_path / "needs_extra_bench.py").write_text("import jejak_not_installed_extra\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("tools.bench.PARTS", (("extra", "needs_extra_bench"), ("firmware", "firmware.bench")))
    out, md = tmp_path / "b.json", tmp_path / "B.md"
    assert main(["--quick", "--json", str(out), "--markdown", str(md)]) == 0
    parts = json.loads(out.read_text())["parts"]
    assert parts["extra"] == {"skipped": "needs jejak_not_installed_extra: pip install 'jejak[hub]'"}
    assert "error" not in parts["firmware"] and parts["firmware"]["seconds"] >= 0


def test_slow_storage_delays_every_synced_write_and_counts_them(tmp_path):
    # The shim is what the storage figures rest on: a child with it preloaded takes at least the delay per
    # fsync (a lower bound, so a loaded machine cannot fail it) and reports how many it made.
    import subprocess
    import sys

    from tools.slow_storage import build

    shim = build(tmp_path)
    counted = tmp_path / "count"
    code = ("import os, time, tempfile\n"
            "fd = os.open(tempfile.mktemp(), os.O_CREAT | os.O_WRONLY)\n"
            "t = time.perf_counter()\n"
            "for _ in range(10): os.write(fd, b'x'); os.fsync(fd); os.fdatasync(fd)\n"
            "print(time.perf_counter() - t)\n")
    done = subprocess.run([sys.executable, "-c", code], env=shim.environ(20, counted), capture_output=True,
                          text=True, check=True)
    assert float(done.stdout) >= 20 * 0.020
    assert int(counted.read_text()) == 20


def test_slow_storage_without_a_compiler_is_skipped_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang here
    out, md = tmp_path / "b.json", tmp_path / "B.md"
    assert main(["--quick", "--only", "none", "--fsync-delay-ms", "5", "--json", str(out),
                 "--markdown", str(md)]) == 0
    skipped = json.loads(out.read_text())["parts"]["slow-storage"]["skipped"]
    assert "no C compiler" in skipped and "apt install gcc" in skipped


def test_mbg_sizes_and_window_are_options(tmp_path):
    out, md = tmp_path / "b.json", tmp_path / "B.md"
    assert main(["--quick", "--only", "mbg", "--mbg-kitchens", "3,6", "--mbg-window-kitchens", "2",
                 "--json", str(out), "--markdown", str(md)]) == 0
    mbg = json.loads(out.read_text())["parts"]["mbg"]
    assert [mbg["scaling"][k]["records"] for k in ("3", "6")] == [3 * 82, 6 * 82]
    assert mbg["window"]["kitchens"] == 2 and mbg["window"]["same_answer"] is True
    assert mbg["window"]["day_of_window_scans_reconciled"] == mbg["window"]["day_alone_scans_reconciled"]
    assert "| window.day_of_window_s |" in md.read_text()


def test_sync_bench_counts_a_process_and_its_children_apart():
    """The sync part's CPU per record: the hub process's own time, and its signature workers' beside it."""
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\nimport sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        # The child's 0.3 s of CPU is its own time, not its children's, and shows among this process's children
        # (with those of any other child this process still has).
        wait_until(lambda: _cpu_of(child.pid)[0] >= 0.25, timeout=30, what="the child's CPU time")
        own, children = _cpu_of(child.pid)
        assert own >= 0.25 and children == 0
        assert _cpu_of(os.getpid())[1] >= own
    finally:
        child.communicate(b"")
