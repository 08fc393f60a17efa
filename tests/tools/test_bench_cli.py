"""`jejak bench --update` replaces the parts it runs and keeps the others' figures."""

import json

from tools.bench import main


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
