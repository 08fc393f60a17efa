"""The cases that also run under MicroPython (tests/micropython/cases_*.py), run here under CPython."""

import asyncio
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).resolve().parents[1] / "micropython"
sys.path.insert(0, str(CASES))

import cases_micropython  # noqa: E402
import cases_runtime  # noqa: E402
import cases_schedule  # noqa: E402
import cases_tap  # noqa: E402

MODULES = (cases_tap, cases_schedule, cases_runtime, cases_micropython)
CHECKS = [
    pytest.param(getattr(module, name), id=f"{module.__name__}.{name}")
    for module in MODULES
    for name in sorted(dir(module))
    if name.startswith(("check_", "acheck_"))
]


@pytest.mark.parametrize("check", CHECKS)
def test_case(check):
    if check.__name__.startswith("acheck_"):
        asyncio.run(check())
    else:
        check()


def test_every_case_module_is_listed_in_the_micropython_runner():
    runner = (CASES / "run_cases.py").read_text()
    for path in CASES.glob("cases_*.py"):
        assert f'"{path.stem}"' in runner, f"{path.name} is not run under MicroPython"
    assert len(CHECKS) >= 40
