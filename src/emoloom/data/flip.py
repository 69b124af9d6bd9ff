"""Valence Flip: polarity-mirrored texts by antonym substitution of lexicon words ("terrible" <-> "great").

A word is swapped only when the lexicon puts it and its antonym on opposite sides of neutral valence, each at least
`min_gap` away from 0.5, so "hot" -> "cold" (both about neutral) is left alone while "happy" -> "unhappy" is taken.
The flipped text keeps every other character of the original.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from emoloom.data.lexicon import Lexicon

_WORD = re.compile(r"[A-Za-z]+")


def load_antonyms(path: Path, lexicon: Lexicon, min_gap: float = 0.15) -> dict[str, str]:
    """word -> antonym for single-word pairs whose lexicon valences sit on opposite sides of 0.5."""
    pairs: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            word, ant = row["word"].strip().lower(), row["antonym"].strip().lower()
            if " " in word or " " in ant or word in pairs:
                continue
            a, b = lexicon.entries.get(word), lexicon.entries.get(ant)
            if a and b and (a[0] - 0.5) * (b[0] - 0.5) < 0 and min(abs(a[0] - 0.5), abs(b[0] - 0.5)) >= min_gap:
                pairs[word] = ant
    return pairs


def flip_text(text: str, antonyms: dict[str, str]) -> str | None:
    """The text with every word that has a polar antonym swapped (case kept), or None when nothing flips."""
    swapped = 0

    def swap(match: re.Match) -> str:
        nonlocal swapped
        word = match.group(0)
        ant = antonyms.get(word.lower())
        if ant is None:
            return word
        swapped += 1
        if word.isupper() and len(word) > 1:
            return ant.upper()
        return ant.capitalize() if word[0].isupper() else ant

    flipped = _WORD.sub(swap, text)
    return flipped if swapped else None
