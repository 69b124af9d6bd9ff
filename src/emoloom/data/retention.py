"""Retention table for the vad_conf filter: how many rows each threshold tau keeps, per prepared file."""

from __future__ import annotations

import pandas as pd

from emoloom.core.tables import markdown_table


def retention_table(confs: dict[str, list[float]], taus: list[float]) -> dict[str, dict]:
    """{file: {"rows": n, "kept": {tau: n_kept}}}; a row is kept when vad_conf >= tau and some lexicon term matched."""
    return {name: {"rows": len(values),
                   "kept": {f"{tau:g}": sum(c >= tau and c > 0 for c in values) for tau in taus}}
            for name, values in confs.items()}


def retention_markdown(table: dict[str, dict], chosen_tau: float) -> str:
    taus = list(next(iter(table.values()))["kept"])
    frame = pd.DataFrame([{"file": name, "rows": row["rows"],
                           **{f"tau={t}" + (" (default)" if float(t) == chosen_tau else ""):
                              f"{row['kept'][t]} ({row['kept'][t] / max(row['rows'], 1):.0%})" for t in taus}}
                          for name, row in table.items()])
    return markdown_table(frame)
