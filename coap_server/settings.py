"""A config file's bytes into a frozen dataclass tree, checked key by key: the hub's and the edge's one reader.

Each program declares its settings as dataclasses with annotated defaults; `settings_from_toml` reads the text
and `build` walks the tree, refusing what an operator's typo makes: an unknown key (with the closest known one),
a value of the wrong type (`"false"` for a bool is true in Python, and a hub would run open), a number that is
not finite, negative or beyond TOML's 64-bit integers, a table where a value belongs and the other way round.
Every refusal is the program's own CONFIG error class, with `where` the key's dotted path and a hint. Pure: the
caller reads the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from ledger.errors import CodedError

T = TypeVar("T")

BOM = "\ufeff"
INT64 = 1 << 63
# Settings whose numbers may be below zero: a time zone's offset, a random seed. Every other number is a count,
# a size, a port, an address or a duration.
SIGNED = frozenset({"tz_offset_s", "seed"})
_UNITS = {"_s": "seconds", "_ms": "milliseconds", "_days": "days", "_bytes": "bytes", "_km": "kilometres"}


def settings_from_toml(data: bytes, source: str, error: type[CodedError]) -> dict[str, Any]:
    """The parsed TOML of a config file's bytes. A UTF-8 byte order mark (Notepad writes one) and CRLF line ends
    are read as any editor shows them; bytes that are not UTF-8 and TOML syntax are refused naming line and
    column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data[:exc.start])
        raise error(f"{source}: not UTF-8 text at line {line}, column {column} (byte 0x{data[exc.start]:02x})",
                    where=f"line {line}, column {column}",
                    hint="save the file as UTF-8 (in Notepad: Save as, Encoding UTF-8)") from None
    text = text.removeprefix(BOM)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"line {at[1]}, column {at[2]}" if at else None
        lines = text.splitlines()
        line = int(at[1]) if at else 0
        here = lines[line - 1].split("#", 1)[0].strip() if 0 < line <= len(lines) else ""
        if _UNCLOSED.fullmatch(here):  # tomllib reads "[coap" as the header it would name twice, if it names one
            raise error(f"{source}: the table header {here} at line {line} has no closing ]",
                        where=f"line {line}, column {at[2] if at else 1}", hint=f"write it as {here.rstrip()}]"
                        + ("]" if here.startswith("[[") else "")) from None
        twice = _given_twice(str(exc), lines, int(at[1])) if at else None
        if twice is not None:
            raise error(f"{source}: {twice[0]}", where=where, hint=twice[1]) from None
        raise error(f"{source}: not valid TOML: {exc}", where=where,
                    hint="fix the TOML syntax there: text in \"quotes\", [table] headers on their own line, "
                         "one key = value a line") from None


_HEADER = re.compile(r"\s*\[(\[?)\s*([^\]]+?)\s*\]")
_UNCLOSED = re.compile(r"\[\[?\s*[A-Za-z0-9_.-]+\s*")  # a table header without its ], comment cut off


def _given_twice(problem: str, lines: list[str], line: int) -> tuple[str, str] | None:
    """What tomllib calls "Cannot overwrite a value" or "Cannot declare ('x',) twice", said with the key or table
    and the line where it was first given; None for another problem, or when that line is not found. A key pasted
    twice, or a [sensor] header copied for a second sensor where [[sensor]] makes a list, is the commonest slip in
    a hand-edited file."""
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    header = _HEADER.match(here)
    if problem.startswith("Cannot declare") and header:
        name = header[2].replace(" ", "")
        first = next((n for n, text in enumerate(lines[:line - 1], 1)
                      if (h := _HEADER.match(text)) and h[2].replace(" ", "") == name), None)
        if first is None:
            return None
        return (f"[{name}] at line {line} is given twice (first at line {first}); a table is written once",
                f"put all of [{name}]'s settings under one header; for a list of them write [[{name}]] at each one")
    if problem.startswith("Cannot overwrite") and "=" in here and not header:
        key = here.split("=", 1)[0].strip()
        section, first = "", None
        for n, text in enumerate(lines[:line - 1], 1):
            if (h := _HEADER.match(text)) and "=" not in text.split("]", 1)[0]:
                section, first = f"[{h[1]}{h[2].replace(' ', '')}]{h[1] and ']'}", None
            elif first is None and "=" in text and text.split("=", 1)[0].strip() == key:
                first = n
        if first is None:
            return None
        place = f" in {section}" if section else ""
        return (f"{key} at line {line} is set twice{place} (first at line {first}); a setting is given once",
                f"delete one of the two {key} lines")
    return None


def _position(before: bytes) -> tuple[int, int]:
    lines = before.split(b"\n")
    return len(lines), len(lines[-1].decode("utf-8", "replace")) + 1


def unknown_key(key: str, known: typing.Iterable[str], where: str, error: type[CodedError],
                section: str = "") -> CodedError:
    """The error for a key no setting has: its path, and the closest known key as the hint leads with."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return error(f"unknown setting {key!r}" + (f" in {section}" if section else ""), where=where,
                 hint=(f"did you mean {close[0]!r}? " if close else "") + f"known settings: {', '.join(names)}")


def build(cls: type[T], data: object, error: type[CodedError], *, where: str = "",
          aliases: Mapping[str, str] | None = None) -> T:
    """An instance of the dataclass `cls` from the TOML table `data` at `where` (a dotted path, "" at the top).
    `aliases` maps other spellings a file may use to field names ([[sensor]] for `sensors`)."""
    if not isinstance(data, dict):
        raise error(f"{_section(where)}: expected a table of settings, got {_kind(data)}", where=where,
                    hint=f"write the settings under a [{where}] header" if where else None)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    aliases = aliases or {}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(key, key)
        path = f"{where}.{key}" if where else key
        if name not in fields:
            raise unknown_key(key, [*fields, *aliases], path, error, _section(where) if where else "")
        if name in kwargs:
            raise error(f"{path}: {name} given twice, under two names; give one, not both", where=path,
                        hint=f"keep one of {[*sorted(k for k, v in aliases.items() if v == name), name]}")
        kwargs[name] = _value(hints[name], value, path, error)
    missing = [name for name, f in fields.items() if name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        path = f"{where}.{missing[0]}" if where else missing[0]
        raise error(f"{_section(where) or 'settings'}: {', '.join(missing)} not set", where=path,
                    hint=f"add {missing[0]} = ...")
    try:
        return cls(**kwargs)
    except (CodedError, ValueError, TypeError) as exc:  # a value the settings' own checks refuse
        if isinstance(exc, error) and exc.where is not None:
            raise
        message = exc.message if isinstance(exc, CodedError) else str(exc)
        named = message.split(":", 1)[0].strip()
        at = named if re.fullmatch(r"[\w.\[\]-]+", named) else where
        if at and where and not at.startswith(where) and at.rsplit(".", 1)[-1] in fields:
            at = f"{where}.{at.rsplit('.', 1)[-1]}"
        raise error(message if message.startswith(at or "\0") else f"{_section(where) or 'settings'}: {message}",
                    where=at or None, hint=getattr(exc, "hint", None)) from None


def _section(where: str) -> str:
    return f"[{where}]" if where else ""


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a bool)"
    if isinstance(value, str):
        return f"{value[:60]!r} (text)"
    return f"{value!r} (a number)"


def _unit(path: str) -> str:
    key = path.rsplit(".", 1)[-1]
    return next((f" of {unit}" for suffix, unit in _UNITS.items() if key.endswith(suffix)), "")


def _value(hint: Any, value: object, path: str, error: type[CodedError]) -> Any:
    """`value` checked against the field type `hint`; a TOML list becomes a tuple where the field is one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # `str | None`: a file cannot say None, only the type
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    key = path.rsplit(".", 1)[-1]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build(hint, value, error, where=path)
    if hint is Any:
        return tuple(value) if isinstance(value, list) else value
    if hint is bool:
        if not isinstance(value, bool):
            raise error(f"{path}: expected true or false, got {_kind(value)}", where=path,
                        hint=f"write {key} = true or {key} = false, without quotes")
        return value
    if hint is int or hint is float:
        number_word = "an integer" if hint is int else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float) or (hint is int and isinstance(value, float)):
            raise error(f"{path}: expected {number_word}{_unit(path)}, got {_kind(value)}", where=path,
                        hint=f"write a plain number{_unit(path)} without quotes or units, e.g. {key} = 10")
        if isinstance(value, float) and not math.isfinite(value):
            raise error(f"{path}: expected a finite number{_unit(path)}, got {value}", where=path,
                        hint="nan and inf are not settings; write the largest value you mean")
        if isinstance(value, int) and not -INT64 <= value < INT64:
            raise error(f"{path}: {value} is beyond TOML's 64-bit integers", where=path, hint="write a smaller number")
        if value < 0 and key not in SIGNED:
            raise error(f"{path}: expected a number >= 0{_unit(path)}, got {value}", where=path,
                        hint="counts, sizes, ports and durations are never negative")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise error(f"{path}: expected text, got {_kind(value)}", where=path, hint=f'quote it: {key} = "..."')
        return value
    if origin is tuple:
        item = args[0] if args else Any
        tables = dataclasses.is_dataclass(item) or typing.get_origin(item) in (dict, Mapping)
        if isinstance(value, dict) and tables:
            raise error(f"{path}: expected an array of tables, got one table", where=path,
                        hint=f"write each entry under its own [[{key}]] header (two brackets)")
        if not isinstance(value, list):
            raise error(f"{path}: expected a list, got {_kind(value)}", where=path,
                        hint=f'write {key} = ["..."] (an empty list [] for none)')
        for n, v in enumerate(value, 1):
            if tables and not isinstance(v, dict):
                raise error(f"{path}[{n}]: expected a table of settings, got {_kind(v)}", where=f"{path}[{n}]",
                            hint=f"write each entry under its own [[{key}]] header")
        return tuple(_value(item, v, f"{path}[{n}]", error) for n, v in enumerate(value, 1))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise error(f"{path}: expected a table of names to values, got {_kind(value)}", where=path,
                        hint=f'write {key} = {{ name = "value" }} or a [{path}] table')
        item = args[1] if len(args) == 2 else Any
        return {k: _value(item, v, f"{path}.{k}", error) for k, v in value.items()}
    return value
