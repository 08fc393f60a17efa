"""The verifier page's words (hub/static/verify/i18n.js), read by `jejak-verify` so that both say one thing.

The page loads its words as a script, also from file:// where it can fetch nothing; the words are one object
literal in it (`const T = {...}`), read here by a parser of just what such a literal holds: keys (names or
quoted), strings, nested objects, commas and comments. Anything else in it is refused by name, so a change to
the file that this reader cannot follow fails its tests rather than saying a wrong word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import hub

WORDS_FILE = Path(hub.__file__).parent / "static" / "verify" / "i18n.js"

Words = dict[str, "str | Words"]


class WordsFileError(ValueError):
    """The words file is not in the shape this reader takes."""


_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[{}:,])
""", re.VERBOSE | re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def _string(literal: str) -> str:
    """A JS string literal's value: its escapes as JS reads them (\\n, \\uXXXX, \\u{X}, \\xXX, \\" ...)."""
    body = literal[1:-1]

    def escape(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] == "u":
            return chr(int(e[2:-1] if e[1] == "{" else e[1:], 16))
        if e[0] == "x":
            return chr(int(e[1:], 16))
        return _ESCAPES.get(e, e)
    return re.sub(r"\\(u\{[0-9a-fA-F]+\}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", escape, body)


def parse_object(text: str, start: int) -> tuple[Words, int]:
    """The object literal whose `{` is at `start`, and where it ends."""
    tokens: list[tuple[str, str, int]] = []
    pos, depth = start, 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise WordsFileError(f"{WORDS_FILE.name} line {line}: expected a key, a string, an object or one of "
                                 f"{{ }} : , and found {text[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind == "space":
            continue
        tokens.append((kind, m.group(), m.start()))
        if m.group() == "{":
            depth += 1
        elif m.group() == "}":
            depth -= 1
            if depth == 0:
                break
    value, used = _object(tokens, 0, text)
    assert used == len(tokens)
    return value, pos


def _object(tokens: list[tuple[str, str, int]], i: int, text: str) -> tuple[Words, int]:
    def fail(at: int, expected: str) -> WordsFileError:
        where = tokens[at][2] if at < len(tokens) else len(text)
        return WordsFileError(f"{WORDS_FILE.name} line {text.count(chr(10), 0, where) + 1}: expected {expected}")

    out: Words = {}
    i += 1  # the "{"
    while tokens[i][1] != "}":
        kind, token, _ = tokens[i]
        if kind not in ("name", "string"):
            raise fail(i, "a key")
        key = _string(token) if kind == "string" else token
        if tokens[i + 1][1] != ":":
            raise fail(i + 1, "':' after a key")
        kind, token, _ = tokens[i + 2]
        value: str | Words
        if kind == "string":
            value, i = _string(token), i + 3
        elif token == "{":
            value, i = _object(tokens, i + 2, text)
        else:
            raise fail(i + 2, "a string or an object as a value")
        if key in out:
            raise fail(i, f"one value for the key {key!r}, which is given twice")
        out[key] = value
        if tokens[i][1] == ",":
            i += 1
        elif tokens[i][1] != "}":
            raise fail(i, "',' or '}'")
    return out, i + 1


@cache
def page_words() -> dict[str, Words]:
    """The page's words, by language: {"id": {...}, "en": {...}}."""
    text = WORDS_FILE.read_text(encoding="utf-8")
    m = re.search(r"\bconst\s+T\s*=\s*\{", text)
    if m is None:
        raise WordsFileError(f"{WORDS_FILE.name}: no `const T = {{...}}` object")
    words, _ = parse_object(text, m.end() - 1)
    return {lang: value for lang, value in words.items() if isinstance(value, dict)}


PLACEHOLDER = re.compile(r"\{(\w+)\}")
# A list of names or numbers as the checks write one ("['action', 'device']", "[1, 4, 15]"): data, which reads
# the same in every language.
DATA_LIST = re.compile(r"\[(?:(?:'[\w-]*'|-?\d+)(?:, (?:'[\w-]*'|-?\d+))*)?\]")


class Speaker:
    """Says the page's sentences in one language, as the page's `say` does: "{name}" placeholders filled from
    values, with none given said as the language's "none"; an English sentence of the checks said again in the
    language, when the page has its words."""

    def __init__(self, lang: str) -> None:
        words = page_words()
        self.lang = lang
        self.words: Mapping[str, str | Words] = words[lang]
        self._english = words["en"]

    def __call__(self, sentence: str, /, **values: object) -> str:
        text = self.words.get(sentence)
        if not isinstance(text, str):
            raise KeyError(f"no words for {sentence}")

        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in values:
                return m.group()  # a brace of the format itself, as "{1: -8}" in a sentence
            v = values[name]
            if name == "pinned":
                return str(self.words["pinned"]) if v else ""
            return str(self.words["none"]) if v is None or v == "" else str(v)
        return PLACEHOLDER.sub(fill, text)

    def code(self, code: str) -> str:
        """What a failure code means (the page's `codes`)."""
        codes = self.words["codes"]
        assert isinstance(codes, dict)
        return str(codes.get(code) or code)

    def count(self, n: int, noun: str) -> str:
        """`n` things: English takes the ".one" words for one ('1 record', '2 records'); Indonesian has one form."""
        one = f"{noun}.one"
        return f"{n} {self(one if n == 1 and one in self.words else noun)}"

    def again(self, english: str, prefixes: tuple[str, ...] = ("why.", "at.")) -> str | None:
        """`english`, a sentence of the checks in English, said in this language: the page's sentence it is, with
        the same values; None when the page has no sentence that says it."""
        if self.lang == "en":
            return english
        for key, pattern, names in _patterns(prefixes):
            m = pattern.fullmatch(english)
            if m is None:
                continue
            values: dict[str, object] = {}
            for placeholder in names:
                said = self._value(m.group(placeholder))
                if said is None:
                    break
                values[placeholder] = said
            else:
                return self(key, **values)
        # "bundle: cut short: ...": a sentence of the page after the name of the thing it is about.
        thing, colon, rest = english.partition(": ")
        if colon and "why." in prefixes and (word := self._thing(thing)) is not None:
            sentence = self.again(rest, prefixes)
            return None if sentence is None else f"{word}: {sentence}"
        return None

    def _thing(self, english: str) -> str | None:
        """A word of the format ('checkpoint', 'receipt', 'bundle') in this language."""
        for key, word in self._english.items():
            if key.startswith("what.") and word == english:
                return str(self.words[key])
        return None

    def _value(self, value: str) -> str | None:
        """A value inside a sentence, said in this language: a word of the format ('checkpoint', 'receipt'), a
        sentence of its own, or data (a number, an id, a field's name), which reads the same in every language."""
        if (name := self._thing(value)) is not None:
            return name
        if " " not in value or DATA_LIST.fullmatch(value):
            return value
        return self.again(value, ("why.",))


@cache
def _patterns(prefixes: tuple[str, ...]) -> list[tuple[str, re.Pattern[str], list[str]]]:
    """The English sentences with those key prefixes as patterns, the most specific (most fixed text) first, so
    that a sentence is taken for the one that says it and not for a looser one that would match it too."""
    out = []
    for key, text in page_words()["en"].items():
        if not isinstance(text, str) or not key.startswith(prefixes):
            continue
        names: list[str] = []
        parts = []
        at = 0
        for m in PLACEHOLDER.finditer(text):
            parts.append(re.escape(text[at:m.start()]))
            name = m.group(1)
            parts.append(f"(?P={name})" if name in names else f"(?P<{name}>.+?)")
            if name not in names:
                names.append(name)
            at = m.end()
        parts.append(re.escape(text[at:]))
        out.append((key, re.compile("".join(parts), re.DOTALL), names, len(PLACEHOLDER.sub("", text))))
    out.sort(key=lambda p: -p[3])
    return [(key, pattern, names) for key, pattern, names, _ in out]

