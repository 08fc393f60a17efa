"""The page on hostile and telling bundles, against jejak-verify: a step lists its first problems and counts the rest, a
failing device says how many records it holds and how many verified, and --against notes a device revoked since
the older bundle and tells a log that shrank from swapped files: the same verdict, code, counts and words."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

from selenium import webdriver

from ledger.bundle import MAX_LISTED
from tests.ledger.hostile_bundles import failing_device, many_bad_checkpoints, revoked_since, shrunk
from tools import verify

N = 200_000

CHECK = """
  const [bundle, against] = arguments;
  const r = Jejak.verifyBundle(Jejak.fromHex(bundle), {against: against ? Jejak.fromHex(against) : null});
  const s = Jejak.summary(r);
  const say = (lang, st) => Jejak.i18n.say(lang, st.key, st.vars);
  return {exit: r.exit, code: r.code, problems: s.problems.map((p) => [p.code, p.message]), more: s.more,
          steps: r.steps.length, records: r.steps.filter((st) => st.key === "log.records").map((st) => [say("en", st), say("id", st)]),
          more_said: r.steps.filter((st) => st.key.startsWith("more.")).map((st) => say("en", st)),
          notes: r.against && r.against.notes ? r.against.notes : null,
          against: r.againstProblem ? r.againstProblem.message : null};
"""


def page_report(page: webdriver.Chrome, bundle: bytes, against: bytes | None = None) -> dict[str, Any]:
    return page.execute_script(CHECK, bundle.hex(), None if against is None else against.hex())  # type: ignore[no-any-return]


def cli(tmp_path: Path, bundle: bytes, against: bytes | None = None, *, json_out: bool = True) -> tuple[int, str]:
    (tmp_path / "b.jejak").write_bytes(bundle)
    args = [str(tmp_path / "b.jejak"), "--json" if json_out else "--lang=en"]
    if against is not None:
        (tmp_path / "a.jejak").write_bytes(against)
        args += ["--against", str(tmp_path / "a.jejak")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = verify.main(args)
    return code, out.getvalue()


def test_many_bad_checkpoints_are_listed_up_to_the_cap_in_both(page: webdriver.Chrome, tmp_path: Path) -> None:
    data = many_bad_checkpoints(N)
    started = time.monotonic()
    web = page_report(page, data)
    took = time.monotonic() - started
    code, out = cli(tmp_path, data)
    py = json.loads(out)
    assert (web["exit"], web["code"]) == (code, py["code"]) == (11, "MALFORMED")
    assert web["more"] == py["more"] == {"checkpoints": N - MAX_LISTED}
    assert len(web["problems"]) == len(py["problems"]) == MAX_LISTED
    assert [c for c, _ in web["problems"]] == [p["code"] for p in py["problems"]]
    assert web["steps"] < 4 * MAX_LISTED
    assert web["more_said"] == [f"… and {N - MAX_LISTED:,} more problems with checkpoints like these, not listed "
                                "one by one"]
    assert took < 120, took


def test_a_failing_device_is_said_the_same(page: webdriver.Chrome, tmp_path: Path) -> None:
    data = failing_device(records=10, bad=6)
    [(en, id_)] = page_report(page, data)["records"]
    _, out = cli(tmp_path, data, json_out=False)
    assert "10 records in the bundle, 6 verified (seq 0..5)" in en
    [line] = [line for line in out.splitlines() if "records in the bundle" in line]
    assert line.endswith(en), (line, en)
    assert "10 catatan dalam bundel, 6 terverifikasi (seq 0..5)" in id_
    # A range whose first record fails at its start: the page says the key list's step and no records line.
    _, out = cli(tmp_path, failing_device(records=10, bad=0), json_out=False)
    assert "10 records in the bundle, none verified" in out


def test_revoked_since_the_older_bundle_is_noted_the_same(page: webdriver.Chrome, tmp_path: Path) -> None:
    older, newer = revoked_since(records=10, revoked=4)
    web = page_report(page, newer, older)
    code, out = cli(tmp_path, newer, older)
    assert (web["exit"], code) == (0, 0)
    assert web["notes"] == json.loads(out)["consistency"]["notes"]
    assert [n["records"] for n in web["notes"]] == [6]


def test_a_log_that_shrank_is_said_the_same(page: webdriver.Chrome, tmp_path: Path) -> None:
    for later, said in ((True, "the hub's log shrank since the older bundle"),
                        (False, "the older bundle's log is larger: the bundles are given the wrong way round")):
        older, newer = shrunk(newer_created_later=later)
        web = page_report(page, newer, older)
        code, out = cli(tmp_path, newer, older)
        assert (web["exit"], web["code"]) == (code, json.loads(out)["code"]) == (17, "INVALID_CHECKPOINT")
        assert web["against"].startswith(said), web["against"]
        if later:
            assert web["against"] == json.loads(out)["problem"]["message"]
