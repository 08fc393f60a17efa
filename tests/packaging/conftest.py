"""One wheel built from the working tree and one fresh venv per test session, shared by the packaging tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What venv itself puts in site-packages: not part of Jejak's install.
VENV_OWN = ("pip", "setuptools", "_distutils_hack", "distutils-precedence.pth", "pkg_resources")


@dataclass(kw_only=True)
class Install:
    """A venv holding the wheel; `edge_*` figures are taken before any extra is installed."""

    venv: Path
    wheel: Path
    edge_packages: dict[str, str] = field(default_factory=dict)
    edge_bytes: int = 0
    extras: set[str] = field(default_factory=set)

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def site_packages(self) -> Path:
        (found,) = self.venv.glob("lib/python*/site-packages")
        return found

    def pip(self, *args: str) -> None:
        subprocess.run([str(self.bin / "python"), "-m", "pip", "install", "-q", *args], check=True,
                       env=_clean_env(), timeout=900)

    def add_extra(self, extra: str) -> None:
        if extra not in self.extras:
            self.pip(f"{self.wheel}[{extra}]")
            self.extras.add(extra)

    def packages(self) -> dict[str, str]:
        out = subprocess.run([str(self.bin / "python"), "-m", "pip", "list", "--format=json"], check=True,
                             capture_output=True, text=True, env=_clean_env()).stdout
        return {p["name"].lower(): p["version"] for p in json.loads(out) if p["name"].lower() not in VENV_OWN}

    def installed_bytes(self) -> int:
        total = 0
        for entry in self.site_packages().iterdir():
            if entry.name.split("-")[0] in VENV_OWN or entry.name in VENV_OWN:
                continue
            paths = entry.rglob("*") if entry.is_dir() else [entry]
            total += sum(p.stat().st_size for p in paths if p.is_file())
        return total


def _clean_env() -> dict[str, str]:
    """The environment without the working tree on sys.path: the venv must run its installed copy."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _tracked_tree(dest: Path) -> None:
    """Copy what git would ship (tracked and new, not ignored) files: no venvs, caches or node_modules."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.fixture(scope="session")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """The wheel built from the working tree, installed (not editable) without extras into a fresh venv."""
    base = tmp_path_factory.mktemp("wheel")
    src, dist, venv = base / "src", base / "dist", base / "venv"
    _tracked_tree(src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
                   check=True, env=_clean_env(), timeout=600, cwd=base)
    (wheel,) = dist.glob("jejak-*.whl")
    # The interpreter the project's own venv was made from, not the venv: a venv of a venv would see the
    # outer one's packages through nothing, but its base must be a real interpreter.
    python = Path(sysconfig.get_config_var("BINDIR") or "") / "python3"
    if not python.exists():
        python = Path(sys.executable)
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, timeout=300)
    install = Install(venv=venv, wheel=wheel)
    install.pip(str(wheel))
    install.edge_packages = install.packages()
    install.edge_bytes = install.installed_bytes()
    return install
