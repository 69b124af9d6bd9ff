"""Tables as pandas DataFrames, written one way everywhere (comparison, retention, screening, benchmarks).

Conventions: a missing value shows as "n/a"; in a ranked column the best value is marked † and the second ‡
(dense ranking on the displayed values, ties share a mark, nothing is marked with fewer than two distinct values).
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

NA = "n/a"
BEST, SECOND = "†", "‡"


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def marks(values: Sequence[float | None], higher_is_better: bool | None) -> list[str]:
    """† for the best value, ‡ for the second best (dense ranking: ties share a mark); '' elsewhere.

    No marks when the column is not ranked (None), or has fewer than two distinct values (nothing to tell apart).
    """
    if higher_is_better is None:
        return [""] * len(values)
    distinct = sorted({v for v in values if not is_missing(v)}, reverse=higher_is_better)
    if len(distinct) < 2:
        return [""] * len(values)
    symbol = {distinct[0]: BEST, distinct[1]: SECOND}
    return ["" if is_missing(v) else symbol.get(v, "") for v in values]


def markdown_table(frame: pd.DataFrame, align: str | None = None) -> str:
    """A GitHub pipe table of `frame` (header = its column names, cells as str, missing -> n/a).

    align: one 'l' or 'r' per column ('---' / '---:'); None writes plain '---' separators.
    """
    header = [str(c) for c in frame.columns]
    if align is not None and len(align) != len(header):
        raise ValueError(f"align has {len(align)} letters for {len(header)} columns")
    rule = ["---:" if a == "r" else "---" for a in align] if align else ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(NA if is_missing(v) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def csv_text(frame: pd.DataFrame) -> str:
    """CSV without the index; missing cells empty."""
    return frame.to_csv(index=False, lineterminator="\n")


def json_ready(value):
    """NaN -> None (valid JSON for DVC); other values unchanged."""
    return None if is_missing(value) else value
