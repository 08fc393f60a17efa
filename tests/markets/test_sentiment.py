"""Indonesian field-note sentiment from the shipped lexicon, with negation and an explanation."""

from __future__ import annotations

from hub.markets.sentiment import Lexicon, sentiment


def test_bad_news_is_negative_and_flags_supply() -> None:
    s = sentiment("Pasokan cabai langka karena banjir, harga naik tajam")
    assert s.score < -0.5 and s.supply_signal
    assert "langka -3" in s.explanation and "harga naik -2" in s.explanation


def test_good_news_is_positive() -> None:
    s = sentiment("Harga stabil, stok aman, pembeli lancar")
    assert s.score > 0.5 and not s.supply_signal


def test_negation_flips_and_softens() -> None:
    plain = sentiment("cabai mahal")
    negated = sentiment("cabai tidak mahal")
    assert plain.score < 0 < negated.score
    assert abs(negated.raw) < abs(plain.raw)
    assert negated.terms[0].negated and "negated" in negated.explanation
    assert not sentiment("stok tidak langka").supply_signal


def test_intensifier_and_neutral_text() -> None:
    assert sentiment("sangat mahal").raw < sentiment("mahal").raw
    n = sentiment("Pak Joko membuka lapak jam enam")
    assert n.score == 0 and n.terms == () and "neutral" in n.explanation


def test_custom_lexicon() -> None:
    lex = Lexicon({"words": {"mantap": 3}, "negators": ["tidak"]})
    assert lex.score("mantap").score > 0 and lex.score("tidak mantap").score < 0
