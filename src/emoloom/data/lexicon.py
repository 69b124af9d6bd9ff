"""VAD lexica (NRC-VAD v1, or Warriner et al. 2013), read from the user's raw-data root, never shipped.

Both are normalised to [0,1]: NRC-VAD is already there; Warriner's 1-9 means become (x-1)/8, clipped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from emoloom.core.errors import DataError, ParamError
from emoloom.core.resources import resource_path

VAD = tuple[float, float, float]

# Inflectional endings tried when a word is not in the lexicon itself ("smiled" -> "smile", "tears" -> "tear").
_SUFFIXES = (("'s", ""), ("ies", "y"), ("ied", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("d", ""),
             ("ing", ""), ("ing", "e"), ("ly", ""))


@dataclass
class Lexicon:
    name: str
    entries: dict[str, VAD]       # lower-cased term (may be several words) -> (v, a, d) in [0,1]
    max_words: int = 1            # longest multi-word term

    def __post_init__(self) -> None:
        self.max_words = max((len(term.split()) for term in self.entries), default=1)

    def lookup(self, word: str) -> VAD | None:
        """The word's VAD; if absent, that of its stem after one inflectional ending is stripped."""
        word = word.lower()
        if word in self.entries:
            return self.entries[word]
        for suffix, repl in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                stem = word[: -len(suffix)] + repl
                if stem in self.entries:
                    return self.entries[stem]
        return None


def _rows(path: Path, delimiter: str, required: list[str]):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}:1: missing columns {missing} (has {reader.fieldnames})")
        for row in reader:
            yield reader.line_num, row


def _scores(path: Path, lineno: int, raw: list[str], lo: float, hi: float) -> VAD:
    try:
        values = [float(x) for x in raw]
    except (TypeError, ValueError):
        raise DataError(f"{path}:{lineno}: V/A/D must be numbers, got {raw}") from None
    if not all(lo <= x <= hi for x in values):
        raise DataError(f"{path}:{lineno}: V/A/D {values} outside the lexicon's {lo}-{hi} scale")
    return tuple(min(1.0, max(0.0, (x - lo) / (hi - lo))) for x in values)  # type: ignore[return-value]


def load_nrc_vad(path: Path) -> Lexicon:
    cols = ["Word", "Valence", "Arousal", "Dominance"]
    entries = {row["Word"].strip().lower(): _scores(path, n, [row[c] for c in cols[1:]], 0.0, 1.0)
               for n, row in _rows(path, "\t", cols) if row["Word"]}
    return Lexicon("nrc_vad", entries)


def load_warriner(path: Path) -> Lexicon:
    cols = ["Word", "V.Mean.Sum", "A.Mean.Sum", "D.Mean.Sum"]
    entries = {row["Word"].strip().lower(): _scores(path, n, [row[c] for c in cols[1:]], 1.0, 9.0)
               for n, row in _rows(path, ",", cols) if row["Word"]}
    return Lexicon("warriner2013", entries)


LOADERS = {"nrc_vad": load_nrc_vad, "warriner2013": load_warriner}


def load_lexicon(name: str, root: Path) -> Lexicon:
    """Load a lexicon by name (a folder name of the raw layout: "nrc_vad" or "warriner2013") from the raw-data root."""
    if name not in LOADERS:
        raise ParamError(f"unknown lexicon {name!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[name](resource_path(root, name))
