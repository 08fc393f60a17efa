"""What a document quotes, checked against the program: each `jejak` command line against the tool's own `--help`
(every subcommand exists, every flag is one that subcommand takes), and each setting against the hub's and the
edge's config loaders (the key exists in the table named, and `key = value` loads). What the docs tell an
operator to type or write must be what the programs read."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import subprocess
import sys
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import config as edge_config
from hub import config as hub_config
from hub.markets.webhooks import Subscriber
from ledger.errors import CodedError

ROOT = Path(__file__).resolve().parents[2]

# `jejak` as a command (also as /opt/jejak/bin/jejak), never `jejak-verify`, a user named jejak or ~/jejak.
_COMMAND = re.compile(r"(?:^|(?<=[\s(]))(?:/opt/jejak/bin/)?jejak(?=\s)")
# Where a command on a shell line ends: a comment, a pipe, a redirection, the next command.
_END = re.compile(r"\s(?:#|\|\s|\|\||&&|;|>|2>|<)|;")


@dataclass(frozen=True)
class Quoted:
    """One `jejak` command line a document shows, with where it is."""

    where: str
    words: tuple[str, ...]  # after `jejak`
    user: str | None = None  # the user of `sudo -u USER` in front of it

    def __str__(self) -> str:
        return f"{self.where}: jejak {' '.join(self.words)}"


def _lines(text: str) -> list[tuple[int, str]]:
    """Shell lines of the ```sh blocks (continuations joined) and every inline code span, with line numbers."""
    out: list[tuple[int, str]] = []
    in_block = False
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block and line.strip() in ("```sh", "```bash", "```console")
            continue
        if in_block:
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            out.append((start, pending + line))
            pending = ""
        else:
            out += [(number, span) for span in re.findall(r"`([^`\n]+)`", line)]
    return out


def _tokens(text: str) -> tuple[str, ...]:
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    # [--flag VALUE] marks an option in a synopsis; ... a value left to the reader.
    return tuple(w.strip("[]") for w in words if w.strip("[]") and w != "...")


def quoted_commands(path: Path, section: str | None = None) -> list[Quoted]:
    """Every `jejak ...` command line in the markdown file (only under the heading `section`, if given)."""
    text = path.read_text()
    if section is not None:
        at = text.index(section)
        nxt = re.search(r"^#{1,2} ", text[at + len(section):], re.M)
        text = "\n" * text[:at].count("\n") + text[at:at + len(section) + (nxt.start() if nxt else len(text))]
    found = []
    for number, line in _lines(text):
        for match in _COMMAND.finditer(line):
            rest = line[match.end():]
            end = _END.search(rest)
            words = _tokens(rest[:end.start()] if end else rest)
            user = re.search(r"sudo -u (\S+)\s+$", line[:match.start()] + " ")
            if words and re.fullmatch(r"[a-z]+", words[0]):
                found.append(Quoted(f"{path.name}:{number}", words, user[1] if user else None))
    return found


@functools.cache
def help_text(words: tuple[str, ...]) -> str | None:
    """What `jejak WORDS --help` prints, or None when the tool refuses WORDS."""
    result = subprocess.run([sys.executable, "-m", "tools.cli", *words, "--help"], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}, timeout=120)
    return result.stdout if result.returncode == 0 else None


def _choices(help_: str) -> set[str]:
    """The subcommands a help text lists (its positional `{a,b,c}`, not an option's choices)."""
    return {c for group in re.findall(r"^ +\{([\w,-]+)\}", help_, re.M) for c in group.split(",")}


def problems(command: Quoted) -> list[str]:
    """What in the quoted command the tool does not take: an unknown subcommand or flag."""
    path: tuple[str, ...] = ()
    help_ = help_text(path)
    assert help_ is not None, "jejak --help failed"
    found = []
    words = list(command.words)
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            flag = word.split("=", 1)[0]
            if flag in ("-h", "--help"):
                continue
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_):
                found.append(f"{command}: `jejak {' '.join(path)}` has no {flag}")
            elif "=" not in word and re.search(rf"{re.escape(flag)} [A-Z][A-Z_]*\b", help_) and words:
                words.pop(0)  # its value
            continue
        choices = _choices(help_)
        if "|" in word and choices:  # a synopsis: list|approve|revoke
            found += [f"{command}: `jejak {' '.join(path)}` has no subcommand {alt!r} (it has "
                      f"{', '.join(sorted(choices))})" for alt in word.split("|") if alt not in choices]
            break
        if word in choices:
            path += (word,)
            sub = help_text(path)
            assert sub is not None, f"`jejak {' '.join(path)} --help` failed"
            help_ = sub
        elif choices:
            found.append(f"{command}: `jejak {' '.join(path)}` has no subcommand {word!r} "
                         f"(it has {', '.join(sorted(choices))})")
            break
    return found


# -- settings ------------------------------------------------------------------------------------------------------

Loader = Callable[[dict[str, Any]], object]
PROGRAMS: dict[str, tuple[type, Loader]] = {"hub": (hub_config.HubConfig, hub_config.from_dict),
                                            "edge": (edge_config.EdgeConfig, edge_config.from_dict)}
# Tables whose entries are lists of tables, with what an entry needs besides the key under test.
ENTRY = {"webhooks": {"id": "a", "kind": "json", "url": "https://ops.example.org/a"}, "sensor": {"name": "a"},
         "sensors": {"name": "a"}}
FILE_NAMES = {"hub.key", "hub.pin"}  # files a document names that read like `table.key`


def tables(cls: type, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], set[str]]:
    """Every table of a config tree (its path) with the keys it takes; [[webhooks]] as its subscribers' keys."""
    hints = typing.get_type_hints(cls)
    out = {path: {f.name for f in dataclasses.fields(cls)}}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple and typing.get_args(hint) else hint
        if f.name == "webhooks":
            item = Subscriber
        if dataclasses.is_dataclass(item) and isinstance(item, type):
            out.update(tables(item, (*path, f.name)))
    if cls is edge_config.EdgeConfig:
        out[("sensor",)] = out[("sensors",)]
    return out


@functools.cache
def known() -> dict[str, dict[tuple[str, ...], set[str]]]:
    return {name: tables(cls) for name, (cls, _) in PROGRAMS.items()}


def _nest(path: tuple[str, ...], key: str, value: Any) -> dict[str, Any]:
    entry: Any = {key: value}
    for name in reversed(path):
        entry = {name: [{**ENTRY[name], **entry}] if name in ENTRY else entry}
    return entry


def setting_problem(span: str) -> str | None:
    """Why the quoted setting is not one the hub or the edge takes (None when one of them does): `[table] key`,
    `table.key`, `[table]` or `[[table]]` must name a real table and key; `[table] key = value` and
    `key = value` must load through the real loader, in the table named or in any table that has the key."""
    if m := re.fullmatch(r"\[\[?([\w.]+)\]\]?", span):
        path = tuple(m[1].split("."))
        return None if any(path in t for t in known().values()) else f"no program has a table [{m[1]}]"
    m = re.fullmatch(r"(?:\[([\w.]+)\] )?(\w+)( = .+)?", span) or re.fullmatch(r"()([a-z_]+\.[a-z_]+)()", span)
    if m is None:
        return None
    table, key, value = m[1] or None, m[2], m[3] or None
    if "." in key:
        table, key = key.split(".")
    where = [(program, path) for program, t in known().items() for path, keys in t.items()
             if key in keys and (table is None or path == tuple(table.split(".")))]
    if not where:
        return f"no program has {'a setting ' + repr(key) if table is None else f'[{table}] {key}'}"
    if value is None:
        return None
    try:
        parsed = tomllib.loads(f"{key}{value}")[key]
    except tomllib.TOMLDecodeError as exc:
        return f"not TOML: {exc}"
    refusals = []
    for program, path in where:
        try:
            PROGRAMS[program][1](_nest(path, key, parsed))
        except CodedError as exc:  # the loader refuses it: CONFIG
            if exc.where and exc.where.rsplit(".", 1)[-1] != key:
                return None  # taken; what is refused is another setting it needs (backend = "postgres": a dsn)
            refusals.append(f"{program} [{'.'.join(path)}]: {exc}")
        else:
            return None
    return "; ".join(refusals)


def quoted_settings(path: Path) -> list[tuple[str, str]]:
    """(line, span) of every inline code span in the file that reads like a setting."""
    found = []
    for number, span in _lines(path.read_text()):
        if (re.fullmatch(r"(\[\[?[\w.]+\]\]?)( \w+( = .+)?)?|\w+ = .+", span)
                or (re.fullmatch(r"[a-z_]+\.[a-z_]+", span) and span not in FILE_NAMES
                    and any((span.split(".")[0],) in t for t in known().values()))):
            found.append((f"{path.name}:{number}", span))
    return found
