"""English counts of things for the messages every part writes: '1 container', '2 containers'.

Indonesian has one form for one and many (`jejak mbg`, the dashboard); English texts that put a number before a
noun or a verb after it go through these, so that one thing never reads as many.
"""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun in the form that number takes: '1 record', '0 records', '2 count taps'. `plural` where
    adding an s is wrong ('1 delivery', '2 deliveries')."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def agree(n: float, one: str, many: str) -> str:
    """The word that agrees with `n` things: agree(n, 'was', 'were'), agree(n, 'step', 'steps')."""
    return one if n == 1 else many
