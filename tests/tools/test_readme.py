"""The README's help block is what the tool really prints, and its two set-up commands exist; the `jejak` commands
README.md and docs/DEPLOY.md quote are ones the tool takes, run as the user whose files they read, and the settings
DEPLOY.md quotes are ones the hub's or the edge's config loader takes (tests/tools/quoted.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge import config as edge_config
from hub import config as hub_config
from ledger.errors import CodedError
from tests.tools.quoted import Quoted, problems, quoted_commands, quoted_settings, setting_problem

ROOT = Path(__file__).resolve().parents[2]


def test_verify_help_block_matches_the_tool():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"\$ jejak-verify --help\n(.*?)\n```", readme, re.S)
    assert block is not None, "README lost its jejak-verify --help block"
    real = subprocess.run([sys.executable, "-m", "tools.verify", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "100"}, check=True).stdout.rstrip("\n")
    assert block.group(1).replace("jejak-verify", "verify.py") == real.replace("jejak-verify", "verify.py")


def test_setup_commands_exist_and_ci_calls_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo" in readme and "scripts/test" in readme
    for script in ("scripts/demo", "scripts/test", "scripts/setup"):
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


DEPLOY_MD = ROOT / "docs" / "DEPLOY.md"


def _quoted() -> list[Quoted]:
    """Every `jejak` command the project's markdown quotes (README, docs/, SECURITY.md, the packages' READMEs)."""
    skip = {".venv", ".venv-pycose", "node_modules", "vendor"}
    return [q for path in sorted(ROOT.rglob("*.md")) if not skip & set(path.relative_to(ROOT).parts)
            for q in quoted_commands(path)]


def test_quoted_commands_are_ones_the_tool_takes():
    quoted = _quoted()
    assert len(quoted) > 100 and {"DEPLOY.md", "README.md", "SECURITY.md"} <= {q.where.split(":")[0] for q in quoted}
    found = [p for q in quoted for p in problems(q)]
    assert not found, "\n".join(found)
    # the check bites: a flag, a subcommand and a synopsis the tool does not have
    assert problems(Quoted("x", ("devices", "approve", "D", "--token", "T")))
    assert problems(Quoted("x", ("edge", "init", "--config", "e.toml")))
    assert problems(Quoted("x", ("devices", "list|approve|enable")))
    assert not problems(Quoted("x", ("hub", "archive", "index", "--config", "h.toml", "--dir", "D", "--json")))


def _unit_user(unit: str) -> str:
    return next(line.split("=", 1)[1] for line in (ROOT / "deploy" / unit).read_text().splitlines()
                if line.startswith("User="))


def test_deploy_runs_hub_and_edge_commands_as_their_units_users():
    """`sudo -u USER jejak ...`: the hub's commands read /etc/jejak/hub.toml (mode 0640, group of the hub's user)
    and its key; the edge's read the device key in its 0700 state directory. Another user gets NO_PERMISSION."""
    hub, edge = _unit_user("jejak-hub.service"), _unit_user("jejak-edge.service")
    run_as = [q for q in quoted_commands(DEPLOY_MD) if q.user]
    assert len(run_as) >= 6
    for q in run_as:
        if q.words[0] == "hub" or q.words[:2] == ("enroll", "qr"):
            assert q.user == hub, f"{q}: run as {q.user}, the hub runs as {hub}"
        elif q.words[0] == "edge" or q.words[:2] == ("enroll", "request"):
            assert q.user == edge, f"{q}: run as {q.user}, the edge runs as {edge}"


def _block_after(text: str, heading: str) -> list[str]:
    """The lines of the first ```sh block under `heading`."""
    rest = text[text.index(heading):]
    return rest.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()


def test_deploy_edge_backup_before_an_upgrade_is_readable_by_root_only(tmp_path: Path):
    """The copy section 8 makes holds the device key: run as DEPLOY.md writes it (root's umask 022), nobody but
    its owner may read it."""
    lines = [line.replace("sudo ", "") for line in _block_after(DEPLOY_MD.read_text(), "## 8. Upgrading")
             if "/var/backups" in line]
    assert any("tar " in line for line in lines), lines
    (tmp_path / "lib" / "edge").mkdir(parents=True)
    (tmp_path / "lib" / "edge" / "device.key").write_bytes(os.urandom(32))
    (tmp_path / "backups").mkdir()
    script = "\n".join(line.replace("/var/lib/jejak", str(tmp_path / "lib"))
                       .replace("/var/backups", str(tmp_path / "backups")) for line in lines)
    subprocess.run(["bash", "-euc", f"umask 022\n{script}"], check=True, timeout=60)
    copies = list((tmp_path / "backups").rglob("*.tar.gz"))
    assert len(copies) == 1, copies
    below = [copies[0], *copies[0].relative_to(tmp_path / "backups").parents]
    modes = {str(p): (tmp_path / "backups" / p).stat().st_mode & 0o777 for p in below if str(p) != "."}
    assert any(mode & 0o077 == 0 for mode in modes.values()), f"the copy is readable by others: {modes}"


# What DEPLOY.md quotes as settings the loaders refuse, on purpose: its examples of what stops a start.
REFUSED_ON_PURPOSE = {"[security] osocre", "security.osocre", 'auto_approve = "false"', 'interval_s = "30s"'}


def test_settings_deploy_quotes_are_ones_the_loaders_take():
    quoted = quoted_settings(DEPLOY_MD)
    assert len(quoted) > 30 and any(span.startswith("[store] dsn = ") for _, span in quoted)
    found = [f"{where}: `{span}`: {problem}" for where, span in quoted
             if span not in REFUSED_ON_PURPOSE and (problem := setting_problem(span))]
    assert not found, "\n".join(found)
    assert {span for _, span in quoted} >= REFUSED_ON_PURPOSE
    assert all(setting_problem(span) for span in REFUSED_ON_PURPOSE)
    # the check bites: a key in the wrong table, a misspelt one, a value of the wrong type, a table nobody has
    for wrong in ("[hub] dsn", "limits.map_sise", "coap_tcp = 1", "[[sensors2]]", "[reader] spi_cs = 5"):
        assert setting_problem(wrong), wrong


def test_deploy_examples_of_a_refused_start_name_the_key_as_documented():
    """`where` is the key's path and the hint leads with the closest key, as DEPLOY.md's examples say."""
    text = " ".join(DEPLOY_MD.read_text().split())
    for example in ("`security.osocre`", "`webhooks[2].min_bnad`", "`sensor[1].interval_s`",
                    "`did you mean 'oscore'?`"):
        assert example in text, example
    hook = '[[webhooks]]\nid = "{}"\nkind = "json"\nurl = "https://ops.example.org/a"\n'
    for loader, toml, where, hint in (
            (hub_config.from_dict, "[security]\nosocre = true\n", "security.osocre", "did you mean 'oscore'?"),
            (hub_config.from_dict, hook.format("a") + hook.format("b") + 'min_bnad = "alert"\n',
             "webhooks[2].min_bnad", "did you mean 'min_band'?"),
            (edge_config.from_dict, '[[sensor]]\nname = "a"\ninterval_s = "30s"\n', "sensor[1].interval_s", None)):
        with pytest.raises(CodedError) as refused:
            loader(tomllib.loads(toml))
        assert refused.value.code == "CONFIG" and refused.value.where == where, refused.value
        assert hint is None or (refused.value.hint or "").startswith(hint), refused.value.hint


def test_deploy_operator_token_lines_give_the_digest_the_hub_checks(tmp_path: Path):
    """Section 7's two lines, run as written: a token file only its owner reads, and the digest the hub compares
    the token `jejak devices` sends (stripped, as it reads the file) with."""
    from hub.auth import hash_token

    text = DEPLOY_MD.read_text()
    lines = [line for line in _block_after(text, "mbg_plan`. An operator makes a token") if "jejak-operator-token" in line]
    assert len(lines) == 2, lines
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", "umask 022\n" + "\n".join(lines)], capture_output=True,
                          text=True, env={**os.environ, "HOME": str(tmp_path)}, check=True, timeout=60)
    token_file = tmp_path / ".jejak-operator-token"
    assert token_file.stat().st_mode & 0o077 == 0
    digest = done.stdout.strip()
    assert hub_config.from_dict({"operator_tokens": [digest]}).operator_tokens == (digest,)
    assert digest == hash_token(token_file.read_text().strip())


PI_OS_FSTAB = """proc            /proc           proc    defaults          0       0
PARTUUID=1a2b3c4d-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=1a2b3c4d-02  /               ext4    defaults,noatime  0       1
"""
DEBIAN_FSTAB = """# / was on /dev/sda1 during installation
UUID=0e2f5a1c-7d3b-4c55-9a6e-8f1d2b3c4d5e /               ext4    errors=remount-ro 0       1
"""


@pytest.mark.parametrize("fstab", [PI_OS_FSTAB, DEBIAN_FSTAB])
def test_deploy_fstab_edit_adds_noatime_and_commit_once(tmp_path: Path, fstab: str):
    """Section 5's sed, run twice on Raspberry Pi OS's and Debian's /etc/fstab: the root file system gets noatime and
    commit=60 once each (Pi OS already has noatime), every other line stays as it was."""
    line = next(line for line in _block_after(DEPLOY_MD.read_text(), "## 5. Sparing the SD card") if "/etc/fstab" in line)
    path = tmp_path / "fstab"
    path.write_text(fstab)
    command = line.replace("sudo ", "").replace("/etc/fstab", str(path))
    for _ in range(2):
        subprocess.run(["bash", "-euc", command], check=True, timeout=30)
    before, after = fstab.splitlines(), path.read_text().splitlines()
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        fields = old.split()
        if fields[:1] != ["#"] and fields[1:3] == ["/", "ext4"]:
            options = new.split()[3].split(",")
            assert options.count("noatime") == 1 and options.count("commit=60") == 1, new
            assert set(options) == set(fields[3].split(",")) | {"noatime", "commit=60"}, new
        else:
            assert new == old
