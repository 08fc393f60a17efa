"""The parts table of DESIGN.md as a test: every import of every shipped module, read with `ast`, obeys it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ledger", "firmware", "edge", "coap_server", "hub", "tools")

# What ledger must never reach for: files, clocks, processes, threads, sockets, event loops, storage.
# `random` stays allowed: ledger.sync takes an injected random.Random for its back-off jitter.
IO_MODULES = frozenset({
    "aiocoap", "aiohttp", "asyncio", "concurrent", "http", "lmdb", "multiprocessing", "os", "paho", "pathlib",
    "psycopg", "select", "selectors", "shutil", "signal", "socket", "sqlite3", "ssl", "subprocess", "tempfile",
    "threading", "time", "urllib", "zeroconf",
})
# The ledger's one benchmark driver reads the clock, writes its results and starts processes (that is its
# job); no other ledger module may import it, so `import ledger` stays pure.
LEDGER_BENCH = "ledger.bench"
BENCH_MAY_USE = frozenset({"multiprocessing", "os", "pathlib", "time"})
HARDWARE = ("adafruit_", "board", "busio", "digitalio", "nfc", "RPi", "smbus", "spidev", "serial")
FORBIDDEN: dict[str, frozenset[str]] = {
    "ledger": frozenset({"firmware", "edge", "coap_server", "hub", "tools"}),
    "firmware": frozenset({"ledger", "edge", "coap_server", "hub", "tools"}),
    "coap_server": frozenset({"edge", "hub", "tools"}),
    "edge": frozenset({"hub", "tools"}),
    "hub": frozenset({"edge", "tools"}),
    "tools": frozenset(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Import:
    """One import statement (or importlib call with a literal name), resolved to an absolute module name."""

    module: str  # the importing module, e.g. "hub.bridges.payloads"
    target: str  # the imported module, e.g. "ledger.legacy"
    line: int
    top_level: bool  # at module level, not inside a function or class body

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


class _Reader(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.depth = 0
        self.found: list[Import] = []

    def _add(self, target: str, node: ast.AST) -> None:
        self.found.append(Import(module=self.module, target=target, line=getattr(node, "lineno", 0),
                                 top_level=self.depth == 0))

    def _nested(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _nested

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0:
            self._add(node.module or "", node)
            return
        base = _resolve(self.module, self.is_package, node.level, node.module)
        if node.module is None:  # `from . import a, b` imports the submodules a and b
            for alias in node.names:
                self._add(f"{base}.{alias.name}", node)
        else:
            self._add(base, node)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("edge.x") and __import__("edge.x") with a literal name count as imports.
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self._add(node.args[0].value, node)
        self.generic_visit(node)


def imports_of(root: Path, package: str) -> list[Import]:
    """Every import in every module of `package` under `root`, including those inside functions."""
    found: list[Import] = []
    for path in sorted((root / package).rglob("*.py")):
        reader = _Reader(module_name(root, path), path.name == "__init__.py")
        reader.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(reader.found)
    return found


def violations(root: Path) -> list[str]:
    """Every import under `root` that breaks the parts table, as 'module:line imports target (rule)'."""
    out: list[str] = []
    for package in PACKAGES:
        if not (root / package).is_dir():
            continue
        for imp in imports_of(root, package):
            top = imp.target.split(".")[0]
            if top in FORBIDDEN[package]:
                out.append(f"{imp} ({package} may not import {top})")
            if package == "ledger":
                allowed = BENCH_MAY_USE if imp.module == LEDGER_BENCH else frozenset()
                if top in IO_MODULES and top not in allowed:
                    out.append(f"{imp} (ledger does no I/O)")
                if imp.target == LEDGER_BENCH and imp.module != LEDGER_BENCH:
                    out.append(f"{imp} (only tools and benchmarks may load the ledger's benchmark)")
            if package == "firmware" and imp.top_level and top.startswith(HARDWARE):
                out.append(f"{imp} (firmware imports hardware libraries inside the driver, when opened)")
    return out


def test_every_shipped_module_obeys_the_parts_table() -> None:
    counts = {package: len(list((ROOT / package).rglob("*.py"))) for package in PACKAGES}
    assert all(n > 0 for n in counts.values()), counts  # the checker really read each package
    assert sum(len(imports_of(ROOT, p)) for p in PACKAGES) > 500
    assert violations(ROOT) == []


def test_relative_imports_resolve_to_the_module_they_name() -> None:
    hub = {(i.module, i.target) for i in imports_of(ROOT, "hub")}
    assert ("hub.bridges.payloads", "hub.markets.catalog") in hub  # from ..markets.catalog import ...
    assert ("hub.security", "hub.service") in hub  # from .service import ...
    assert _resolve("hub", True, 1, "service") == "hub.service"
    assert _resolve("hub.bridges", True, 2, None) == "hub"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_catches_planted_violations(tmp_path: Path) -> None:
    _write(tmp_path, {
        "ledger/__init__.py": "from .record import x\n",
        "ledger/record.py": "import hashlib\nimport random\n\ndef load():\n    import lmdb\n",
        "ledger/sub/__init__.py": "",
        "ledger/sub/deep.py": "from .. import record\nfrom ..bench import run\n",
        "ledger/bench.py": "import time\nimport os\nimport socket\n",
        "firmware/__init__.py": "import time\n",
        "firmware/tap.py": "class T:\n    def f(self):\n        from ledger import cbor\n",
        "firmware/drivers/blinka.py": "import board\n\ndef open_bus():\n    import busio\n",
        "coap_server/__init__.py": "from ledger import cbor\n",
        "coap_server/discovery.py": "async def f():\n    from edge.daemon import EdgeDaemon\n",
        "edge/__init__.py": "",
        "edge/security.py": "from coap_server import discovery\nfrom hub.security import read_grant\n",
        "edge/x.py": "import importlib\nm = importlib.import_module('tools.cli')\n",
        "hub/__init__.py": "",
        "hub/app.py": "from .service import Hub\n\ndef start():\n    import edge.discovery as d\n",
        "hub/bridges/__init__.py": "",
        "hub/bridges/payloads.py": "from ..markets import catalog\nfrom ledger.legacy import check_tag\n",
        "tools/cli.py": "import hub.app\nimport edge.daemon\nimport asyncio\n",
    })
    got = sorted(violations(tmp_path))
    assert got == sorted([
        "ledger.record:5 imports lmdb (ledger does no I/O)",
        "ledger.sub.deep:2 imports ledger.bench (only tools and benchmarks may load the ledger's benchmark)",
        "ledger.bench:3 imports socket (ledger does no I/O)",
        "firmware.tap:3 imports ledger (firmware may not import ledger)",
        "firmware.drivers.blinka:1 imports board (firmware imports hardware libraries inside the driver, "
        "when opened)",
        "coap_server.discovery:2 imports edge.daemon (coap_server may not import edge)",
        "edge.security:2 imports hub.security (edge may not import hub)",
        "edge.x:2 imports tools.cli (edge may not import tools)",
        "hub.app:4 imports edge.discovery (hub may not import edge)",
    ]), got
