"""Is evaluation B better than evaluation A? A seeded, paired bootstrap over the rows both scored (`emoloom diff`).

Two evaluations of the same data (e.g. `data/eval/20_80-s11/outputs.jsonl` before and after `dvc exp run -S
loss.lambda_vad=1.5`) are compared on the rows they share: the generated JSON on the rows both decoded, the heads on
the rows both scored. One resample of those rows is applied to both runs at once, so the interval is that of the
difference B − A, not of either run alone. A difference whose interval contains 0 is not a finding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from emoloom.core.errors import DataError
from emoloom.evaluation.metrics import evaluate
from emoloom.evaluation.runner import as_result

# metric -> (which answers it scores, how to read it from `metrics.evaluate`'s result)
METRICS: dict[str, tuple[str, Callable[[dict], float | None]]] = {
    "ParseOK": ("generated", lambda m: m["parse_ok"]),
    "macro-F1 strict": ("generated", lambda m: m["strict"]["labels"]["macro_f1"]),
    "1−RMSE strict": ("generated", lambda m: m["strict"]["vad"]["one_minus_rmse"]),
    "ρ̄ strict": ("generated", lambda m: m["strict"]["vad"]["rho_mean"]),
    "heads macro-F1": ("heads", lambda m: m["strict"]["labels"]["macro_f1"]),
    "heads 1−RMSE": ("heads", lambda m: m["strict"]["vad"]["one_minus_rmse"]),
}


def read_outputs(path: Path) -> dict[str, dict]:
    """The per-example rows of an evaluation's outputs.jsonl (its first line is the run's fingerprint), by id."""
    rows = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not a JSON line ({e.msg}); a torn last line is cut when the "
                                f"evaluation is re-run") from None
            if lineno == 1 and "_fingerprint" in obj:
                continue
            if not isinstance(obj, dict) or "id" not in obj or "decoded" not in obj:
                raise DataError(f"{path}:{lineno}: not an evaluation output row (expected the keys id, decoded, "
                                f"parsed, heads, as `emoloom evaluate` and eval_dev write them)")
            rows[obj["id"]] = obj
    if not rows:
        raise DataError(f"{path}: no evaluated rows")
    return rows


def _answers(rows: dict[str, dict], ids: list[str], kind: str) -> list:
    if kind == "heads":
        return [as_result(rows[i]["heads"], True, None) for i in ids]
    return [as_result(rows[i]["parsed"], rows[i]["valid"], rows[i]["failure"]) for i in ids]


def shared_rows(records: dict[str, dict], a: dict[str, dict], b: dict[str, dict]) -> dict[str, list[str]]:
    """The ids each kind of answer is compared on: decoded in both runs, or with heads in both (gold order)."""
    both = [i for i in records if i in a and i in b]
    return {"generated": [i for i in both if a[i]["decoded"] and b[i]["decoded"]],
            "heads": [i for i in both if a[i]["heads"] is not None and b[i]["heads"] is not None]}


def paired_diff(records: list[dict], a: dict[str, dict], b: dict[str, dict], samples: int = 1000, seed: int = 0,
                level: float = 0.95) -> pd.DataFrame:
    """One row per metric: rows compared, A, B, B − A, its percentile interval and the share of resamples where
    B is ahead (ties count half)."""
    gold = {r["id"]: r for r in records}
    ids = shared_rows(gold, a, b)
    rng = np.random.default_rng(seed)
    draws = {kind: [rng.integers(0, len(rows), len(rows)) for _ in range(samples)] if rows else []
             for kind, rows in ids.items()}
    out = []
    for kind in ("generated", "heads"):
        rows = ids[kind]
        if not rows:
            continue
        golds, ans_a, ans_b = [gold[i] for i in rows], _answers(a, rows, kind), _answers(b, rows, kind)
        point = (evaluate(golds, ans_a), evaluate(golds, ans_b))
        resampled = [(evaluate([golds[k] for k in idx], [ans_a[k] for k in idx]),
                      evaluate([golds[k] for k in idx], [ans_b[k] for k in idx])) for idx in draws[kind]]
        for name, (metric_kind, read) in METRICS.items():
            if metric_kind != kind or read(point[0]) is None or read(point[1]) is None:
                continue
            diff = np.array([read(mb) - read(ma) for ma, mb in resampled])
            lo, hi = np.percentile(diff, [50 * (1 - level), 50 * (1 + level)])
            out.append({"metric": name, "rows": len(rows), "A": read(point[0]), "B": read(point[1]),
                        "B − A": round(read(point[1]) - read(point[0]), 4),
                        f"{round(100 * level)} % interval": f"[{lo:+.4f}, {hi:+.4f}]",
                        "B ahead": round(float(((diff > 0) + 0.5 * (diff == 0)).mean()), 3)})
    if not out:
        raise DataError("the two evaluations share no scored rows of this data file (different splits?)")
    return pd.DataFrame(out)
