"""Retention table for the vad_conf filter: how many rows each threshold tau keeps, per prepared file."""

from __future__ import annotations


def retention_table(confs: dict[str, list[float]], taus: list[float]) -> dict[str, dict]:
    """{file: {"rows": n, "kept": {tau: n_kept}}}; a row is kept when vad_conf >= tau and some lexicon term matched."""
    return {name: {"rows": len(values),
                   "kept": {f"{tau:g}": sum(c >= tau and c > 0 for c in values) for tau in taus}}
            for name, values in confs.items()}


def retention_markdown(table: dict[str, dict], chosen_tau: float) -> str:
    taus = list(next(iter(table.values()))["kept"])
    head = ["file", "rows"] + [f"tau={t}" + (" (default)" if float(t) == chosen_tau else "") for t in taus]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.items():
        cells = [f"{row['kept'][t]} ({row['kept'][t] / max(row['rows'], 1):.0%})" for t in taus]
        lines.append(f"| {name} | {row['rows']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
