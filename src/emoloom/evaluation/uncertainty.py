"""How sure a screening ranking is: a seeded, paired bootstrap over the dev rows (docs/screening.md).

Every candidate is scored on the same rows, so one resample of row indices is applied to all of them at once: per
resample each candidate gets its Table 1 numbers and the paper's composite across candidates, and the leader of that
resample is counted (ties share the count). The result per candidate: percentile intervals of macro-F1, RMSE, ρ̄,
ParseOK and the composite, and how often it ranks first. Candidates whose composite interval overlaps the leader's
are reported as tied with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from emoloom.core.composite import screening_scores
from emoloom.core.config import option, validate

INTERVAL_METRICS = ("macro_f1", "rmse", "rho_mean", "parse_ok")
COMPOSITE_INPUTS = ("macro_f1", "rmse", "rho_mean", "quality")
SEPARATE = 0.02       # the macro-F1 difference the row-count estimate is for


@dataclass(frozen=True)
class BootstrapConfig:
    """The screening bootstrap (params.yaml `screen.bootstrap`)."""
    samples: int = option(1000, "bootstrap resamples of the dev rows (paired across candidates)", ge=10)
    level: float = option(0.95, "two-sided level of every interval", gt=0, lt=1)
    seed: int = option(0, "resampling seed")

    def __post_init__(self) -> None:
        validate(self, "screen.bootstrap")


def paired_bootstrap(n_rows: int, summarize: Callable[[np.ndarray], Mapping[str, Mapping[str, float]]],
                     cfg: BootstrapConfig) -> dict[str, dict]:
    """{candidate: {"ci": {metric: [lo, hi]}, "rank1": frequency, "f1_diff_ci": [lo, hi] vs the point leader}} from
    `summarize(indices)` -> {candidate: Table 1 row on those rows}, called once per resample."""
    rng = np.random.default_rng(cfg.seed)
    draws: dict[str, dict[str, list[float]]] = {}
    wins: Counter = Counter()
    for _ in range(cfg.samples):
        rows = summarize(rng.integers(0, n_rows, n_rows))
        scores = screening_scores({k: {m: r[m] for m in COMPOSITE_INPUTS} for k, r in rows.items()})
        top = max(s["composite"] for s in scores.values())
        leaders = [k for k, s in scores.items() if s["composite"] >= top - 1e-9]
        for k in leaders:
            wins[k] += 1 / len(leaders)
        for k, r in rows.items():
            d = draws.setdefault(k, {m: [] for m in (*INTERVAL_METRICS, "composite")})
            for m in INTERVAL_METRICS:
                d[m].append(r[m])
            d["composite"].append(scores[k]["composite"])
    lo, hi = 100 * (1 - cfg.level) / 2, 100 * (1 + cfg.level) / 2
    out = {}
    for k, d in draws.items():
        out[k] = {"ci": {m: [round(float(np.percentile(v, lo)), 4), round(float(np.percentile(v, hi)), 4)]
                         for m, v in d.items()},
                  "rank1": round(wins[k] / cfg.samples, 4), "f1_draws": np.asarray(d["macro_f1"])}
    return out


def attach(points: Mapping[str, dict], boot: dict[str, dict], n_rows: int, level: float) -> dict[str, dict]:
    """Point rows (with composite) + intervals, rank-1 frequency, `tied` (composite interval overlaps the leader's),
    the paired macro-F1 difference to the leader and the rows that difference would need to be told from 0.02."""
    leader = max(points, key=lambda k: points[k]["composite"])
    lead_ci = boot[leader]["ci"]["composite"]
    out = {}
    for k, row in points.items():
        ci = boot[k]["ci"]["composite"]
        diff = boot[leader]["f1_draws"] - boot[k]["f1_draws"]
        half = (np.percentile(diff, 50 * (1 + level)) - np.percentile(diff, 50 * (1 - level))) / 2
        out[k] = {**row, "ci": boot[k]["ci"], "rank1": boot[k]["rank1"],
                  "tied": k != leader and ci[1] >= lead_ci[0] and lead_ci[1] >= ci[0],
                  "f1_diff_to_leader": None if k == leader else round(float(diff.mean()), 4),
                  "rows_to_separate_0.02": None if k == leader else int(np.ceil(n_rows * (half / SEPARATE) ** 2))}
    out[leader]["tied"] = any(r["tied"] for r in out.values())
    return out
