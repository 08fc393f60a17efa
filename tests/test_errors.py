"""docs/ERRORS.md as a test: every coded error of every shipped package is in its table, as its class declares."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest

from coap_server.errors import coap_code
from coap_server.errors import error_response as coap_response
from hub.http import error_response as http_response
from ledger.errors import CodedError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ERRORS.md"
PACKAGES = ("ledger", "firmware", "edge", "coap_server", "hub", "tools")
CODE = re.compile(r"[A-Z][A-Z0-9_]+")
# Codes that are not errors of ours but appear where codes do: aiocoap's own response names.
NOT_OURS = frozenset({"METHOD_NOT_ALLOWED"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One row of the table in docs/ERRORS.md."""

    code: str
    coap: str
    http: int
    exit_code: int
    retry_after_s: int | None
    classes: frozenset[str]


def table() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        code, coap, http, exit_code, retry, classes = cells[:6]
        code = code.strip("`")
        assert code not in rows, f"docs/ERRORS.md lists {code} twice; one code has one row"
        rows[code] = Row(code=code, coap=coap, http=int(http), exit_code=int(exit_code),
                         retry_after_s=None if retry == "—" else int(retry),
                         classes=frozenset(re.findall(r"`([\w.]+)`", classes)))
    return rows


def shipped_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        root = importlib.import_module(package)
        names.extend(info.name for info in pkgutil.walk_packages(root.__path__, package + "."))
    return names


def coded_classes() -> list[type[CodedError]]:
    for name in shipped_modules():
        importlib.import_module(name)  # a module that fails to import fails the test: it ships broken
    found: list[type[CodedError]] = [CodedError]
    todo = [CodedError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.split(".")[0] in PACKAGES and sub not in found:
                found.append(sub)
                todo.append(sub)
    return found


def name_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


CLASSES = coded_classes()


@pytest.mark.parametrize("cls", CLASSES, ids=name_of)
def test_every_coded_error_class_is_in_the_table_as_it_declares(cls: type[CodedError]) -> None:
    own = [attr for attr in ("code", "coap", "http") if attr in cls.__dict__]
    assert own == ["code", "coap", "http"], f"{name_of(cls)} must declare code, coap and http itself"
    row = table().get(cls.code)
    expected = (f"| `{cls.code}` | {cls.coap} | {cls.http} | {cls.exit_code} | "
                f"{'—' if cls.retry_after_s is None else cls.retry_after_s} | `{name_of(cls)}` | ... |")
    assert row is not None, f"docs/ERRORS.md has no row for {cls.code}; add: {expected}"
    assert name_of(cls) in row.classes, f"the {cls.code} row must name {name_of(cls)}"
    assert (row.coap, row.http, row.exit_code, row.retry_after_s) == \
        (cls.coap, cls.http, cls.exit_code, cls.retry_after_s), \
        f"docs/ERRORS.md and {name_of(cls)} disagree on {cls.code}; the class declares {expected}"


def test_the_table_names_only_classes_that_exist() -> None:
    names = {name_of(cls) for cls in CLASSES}
    for row in table().values():
        assert row.classes, f"{row.code} names no class"
        gone = row.classes - names
        assert not gone, f"the {row.code} row names {sorted(gone)}, which are no coded error classes"


def codes_written_in_the_code() -> dict[str, str]:
    """Each code that a shipped module writes as a code (`code = "X"`, `code="X"`, `{"code": "X"}`,
    `x.code == "X"`), with where it was first seen."""
    found: dict[str, str] = {}

    def note(node: ast.expr | None, where: str) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
            found.setdefault(node.value, where)

    for name in shipped_modules():
        module = importlib.import_module(name)
        path = Path(module.__file__ or "")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            assigned = isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "code"
                                                            for t in node.targets)
            if assigned or (isinstance(node, ast.keyword) and node.arg == "code"):
                note(node.value, where)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code":
                        note(value, where)
            elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and \
                    node.left.attr == "code":
                for comparator in node.comparators:
                    note(comparator, where)
    return found


def test_every_code_written_in_the_code_is_in_the_table() -> None:
    missing = {code: where for code, where in codes_written_in_the_code().items()
               if code not in table() and code not in NOT_OURS}
    assert not missing, f"codes used but not in docs/ERRORS.md (declare a class and a row): {missing}"


@pytest.mark.parametrize("cls", CLASSES, ids=name_of)
def test_both_renderers_answer_as_the_class_declares(cls: type[CodedError]) -> None:
    err = cls("probe message", hint="probe hint")
    coap = coap_response(err)
    assert coap.code == coap_code(cls.coap)
    assert cbor2.loads(coap.payload) == {"code": cls.code, "message": "probe message", "hint": "probe hint"}
    assert coap.opt.max_age == cls.retry_after_s
    http = http_response(err)
    assert http.status == cls.http
    assert http.text is not None and f'"code": "{cls.code}"' in http.text
    assert http.headers.get("Retry-After") == (None if cls.retry_after_s is None else str(cls.retry_after_s))


def test_the_format_specs_exit_codes_are_the_tables() -> None:
    spec = (ROOT / "docs" / "FORMAT.md").read_text().split("## 13. Errors and exit codes")[1].split("\n## ")[0]
    listed = {m[0]: int(m[1]) for m in re.findall(r"^\| `([A-Z_]+)` \| (\d+) \|", spec, re.M)}
    assert len(listed) >= 9
    assert listed == {code: table()[code].exit_code for code in listed}


def test_untyped_exceptions_answer_internal_and_parsing_errors_bad_request() -> None:
    assert coap_response(RuntimeError("secret detail")).code == coap_code("5.00")
    assert b"secret detail" not in coap_response(RuntimeError("secret detail")).payload
    assert http_response(RuntimeError("secret detail")).status == 500
    assert http_response(ValueError("not a number")).status == 400
