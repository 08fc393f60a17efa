"""Every setting of a config tree with the mistakes an operator makes in it, for the hub's and the edge's sweeps."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from coap_server.settings import SIGNED
from ledger.errors import CodedError


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    path: tuple[str, ...]  # ("store", "backend")
    hint: Any  # the field's type

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def table(self, value: object, key: str | None = None) -> dict[str, Any]:
        """The parsed TOML that sets this setting (or `key` in its place) to `value`."""
        out: Any = {key or self.path[-1]: value}
        for part in reversed(self.path[:-1]):
            out = {part: out}
        return typing.cast(dict[str, Any], out)


def settings(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[Setting]:
    """Every leaf setting of the dataclass tree `cls`, each table's own settings after its key."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from settings(typing.cast(type, hint), (*prefix, f.name))
        else:
            yield Setting((*prefix, f.name), hint)


def misspelt(key: str) -> str:
    """The key with its last letter typed twice: `adress` for `address` reads the same to the eye."""
    return key + key[-1]


def wrong_values(setting: Setting) -> list[object]:
    """Values of another type than the setting's, or out of what any such setting takes."""
    hint = setting.hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    if hint is bool:
        return ["false", 0, 1]
    if hint is int:
        values: list[object] = ["10", 1.5, True, 1 << 64, {"a": 1}]
        return values if setting.path[-1] in SIGNED else [*values, -1]
    if hint is float:
        values = ["10s", float("nan"), float("inf"), False, [1]]
        return values if setting.path[-1] in SIGNED else [*values, -1.0]
    if hint is str:
        return [5, True, ["x"], {"a": "b"}]
    if origin is tuple:
        return ["x", 5, {"a": "b"}]
    if origin in (dict, Mapping):
        return ["x", 5, ["x"]]
    raise AssertionError(f"{setting.dotted}: no mistakes known for {hint}")


def check_misspelt(setting: Setting, build: Callable[[dict[str, Any]], object], error: type[CodedError]) -> None:
    """The setting's key misspelt is refused, naming the misspelt path and leading the hint with the key meant."""
    wrong = misspelt(setting.path[-1])
    try:
        build(setting.table(1, key=wrong))
    except error as exc:
        assert exc.code == "CONFIG" and exc.where == ".".join((*setting.path[:-1], wrong))
        assert (exc.hint or "").startswith(f"did you mean {setting.path[-1]!r}?"), exc.hint
    else:
        raise AssertionError(f"{setting.dotted} misspelt as {wrong!r} was taken")


def check_wrong_values(setting: Setting, build: Callable[[dict[str, Any]], object], error: type[CodedError]) -> None:
    """Every wrong value of the setting is refused, naming the setting (or an item of it) with a hint."""
    for value in wrong_values(setting):
        try:
            build(setting.table(value))
        except error as exc:
            assert exc.code == "CONFIG" and (exc.where or "").startswith(setting.dotted), (value, exc.where)
            assert exc.hint, value
        else:
            raise AssertionError(f"{setting.dotted} = {value!r} was taken")
