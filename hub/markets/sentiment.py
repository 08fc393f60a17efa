"""Lexicon-based Indonesian sentiment of field notes, with negation, intensifiers and an explanation of
every word that counted."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

# Negation reaches this many words ahead: "tidak terlalu mahal" negates "mahal" two words on.
NEGATION_REACH = 3
# Scores are squashed into -1..1 with x / sqrt(x^2 + ALPHA), as VADER does, so long notes do not run off.
ALPHA = 15.0

_TOKEN = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Term:
    text: str
    weight: float  # after negation and intensifiers
    negated: bool
    supply: bool

    def to_dict(self) -> dict[str, Any]:
        return {"term": self.text, "weight": self.weight, "negated": self.negated, "supply": self.supply}


@dataclass(frozen=True, slots=True, kw_only=True)
class Sentiment:
    score: float  # -1 (bad for buyers or supply) .. +1
    raw: float  # sum of term weights
    supply_signal: bool  # a supply-disruption term counted and was not negated
    terms: tuple[Term, ...]
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "raw": self.raw, "supply_signal": self.supply_signal,
                "terms": [t.to_dict() for t in self.terms], "explanation": self.explanation}


class Lexicon:
    def __init__(self, data: dict[str, Any]) -> None:
        self.words: dict[str, float] = {k: float(v) for k, v in data["words"].items()}
        self.phrases: dict[tuple[str, ...], float] = {
            tuple(k.split()): float(v) for k, v in data.get("phrases", {}).items()}
        self.supply: set[str] = set(data.get("supply", []))
        self.negators: set[str] = set(data.get("negators", []))
        self.intensifiers: dict[str, float] = {k: float(v) for k, v in data.get("intensifiers", {}).items()}
        self._max_phrase = max((len(p) for p in self.phrases), default=1)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Lexicon:
        if path is None:
            text = resources.files("hub.markets").joinpath("data/lexicon_id.json").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        return cls(json.loads(text))

    def score(self, text: str) -> Sentiment:
        tokens = _TOKEN.findall(text.lower())
        terms: list[Term] = []
        negate_until = -1
        boost = 1.0
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok in self.negators:
                negate_until = i + NEGATION_REACH
                i += 1
                continue
            match, weight = None, 0.0
            for n in range(min(self._max_phrase, len(tokens) - i), 1, -1):
                cand = tuple(tokens[i:i + n])
                if cand in self.phrases:
                    match, weight = cand, self.phrases[cand]
                    break
            if match is None and tok in self.words:
                match, weight = (tok,), self.words[tok]
            # "sedikit" is both a word ("few") and a softener ("a little"): before a scored word it softens.
            if tok in self.intensifiers and i + 1 < len(tokens) and (
                    tokens[i + 1] in self.words or tokens[i + 1] in self.negators):
                boost = self.intensifiers[tok]
                i += 1
                continue
            if match is None:
                i += 1
                continue
            phrase = " ".join(match)
            negated = i <= negate_until
            w = weight * boost * (-0.5 if negated else 1.0)
            # Negation halves and flips ("tidak mahal" is mildly good, not as good as "murah").
            if i + len(match) < len(tokens) and tokens[i + len(match)] in self.intensifiers and \
                    tokens[i + len(match)] in ("sekali", "banget"):
                w *= self.intensifiers[tokens[i + len(match)]]
            terms.append(Term(text=phrase, weight=round(w, 3), negated=negated,
                              supply=(phrase in self.supply or tok in self.supply)))
            boost = 1.0
            i += len(match)
        raw = sum(t.weight for t in terms)
        score = raw / math.sqrt(raw * raw + ALPHA) if raw else 0.0
        supply = any(t.supply and not t.negated for t in terms)
        if terms:
            parts = ", ".join(f"{t.text} {t.weight:+g}{' (negated)' if t.negated else ''}" for t in terms)
            explanation = (f"sum of lexicon weights {raw:+g} from: {parts}; squashed as x/sqrt(x^2+{ALPHA:g}) "
                           f"to {score:+.2f}")
        else:
            explanation = "no lexicon word found; neutral (0)"
        return Sentiment(score=score, raw=raw, supply_signal=supply, terms=tuple(terms), explanation=explanation)


_DEFAULT: Lexicon | None = None


def sentiment(text: str) -> Sentiment:
    """Score a note with the shipped lexicon (data/lexicon_id.json)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Lexicon.load()
    return _DEFAULT.score(text)
