"""Every firmware module compiles with mpy-cross, and imports only what MicroPython has."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
MODULES = sorted(FIRMWARE.rglob("*.py"))

# Modules MicroPython provides (the WebAssembly port has all of these; bare-metal ports have them too).
MICROPYTHON_STDLIB = {"asyncio", "time", "sys", "gc", "micropython", "json", "struct", "binascii", "os",
                      "errno", "collections", "random"}
# Hardware libraries, each allowed only inside its own driver module, and only inside a function.
HARDWARE = {
    "firmware/drivers/nfcpy_reader.py": {"nfc", "nfc.clf"},
    "firmware/drivers/rc522.py": {"adafruit_bus_device.spi_device", "firmware.drivers.blinka"},
    "firmware/drivers/blinka.py": {"board", "busio", "digitalio", "adafruit_pn532.i2c", "adafruit_pn532.spi",
                                   "adafruit_pn532.uart", "adafruit_bme280", "adafruit_sht31d", "adafruit_dht",
                                   "serial"},
}


def _mpy_cross(*args):
    return subprocess.run([sys.executable, "-m", "mpy_cross", *args], capture_output=True, text=True,
                          timeout=60)


def test_there_are_modules():
    names = {p.relative_to(ROOT).as_posix() for p in MODULES}
    for name in ("firmware/hal.py", "firmware/tap.py", "firmware/schedule.py", "firmware/runtime.py",
                 "firmware/sim.py", "firmware/bench.py", "firmware/drivers/nfcpy_reader.py",
                 "firmware/drivers/blinka.py"):
        assert name in names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_compiles_with_mpy_cross(path, tmp_path):
    out = tmp_path / (path.stem + ".mpy")
    done = _mpy_cross("-o", str(out), str(path))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:1] == b"M"  # .mpy header


def test_mpy_cross_refuses_what_micropython_cannot_parse(tmp_path):
    """mpy-cross is a real check of syntax: it refuses `match`, which CPython 3.11 accepts."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    compile(bad.read_text(), str(bad), "exec")
    done = _mpy_cross("-o", str(tmp_path / "bad.mpy"), str(bad))
    assert done.returncode != 0 and "SyntaxError" in done.stderr


def _imports(tree):
    """(module name, at module level?) for every import in the tree."""
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, "relative import"
                found.append((child.module, top))
            visit(child, inner)

    visit(tree, True)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_imports_only_what_micropython_has(path):
    name = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(), str(path))
    hardware = HARDWARE.get(name, set())
    for module, top in _imports(tree):
        root = module.split(".")[0]
        if root == "firmware" or root in MICROPYTHON_STDLIB:
            continue
        assert module in hardware, f"{name} imports {module}, which MicroPython lacks"
        assert not top, f"{name} imports hardware library {module} at module level"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_avoids_cpython_only_syntax(path):
    """What mpy-cross lets through but MicroPython or the house subset does not want."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        assert not isinstance(node, ast.NamedExpr), f"walrus in {path.name}:{node.lineno}"
        assert not isinstance(node, ast.AnnAssign), f"annotation in {path.name}:{node.lineno}"
        if isinstance(node, ast.FormattedValue):
            raise AssertionError(f"f-string in {path.name}:{node.lineno}: use % formatting")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            assert not args.posonlyargs and not args.kwonlyargs, f"{path.name}:{node.lineno}"
            assert node.returns is None, f"return annotation in {path.name}:{node.lineno}"
            for arg in args.args:
                assert arg.annotation is None, f"annotation in {path.name}:{node.lineno}"
