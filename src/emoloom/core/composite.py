"""The paper's composite score (Backbone Screening): z-scores across candidates, weighted. It ranks screened
backbones (emoloom.evaluation.screening) and the fine-tuned runs (metrics/best.json, emoloom.reporting.best)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# Weights of z(MacroF1), the VAD term and z(Quality) (paper, Backbone Screening).
SCREENING_WEIGHTS = {"z_f1": 0.4, "z_vad": 0.4, "z_quality": 0.2}
DIGITS = 4


def zscores(values: Sequence[float]) -> list[float]:
    """(x - mean) / std across candidates, population std; all zeros for one candidate or zero spread."""
    x = np.asarray(values, dtype=float)
    std = x.std() if x.size else 0.0
    return [0.0] * x.size if std == 0 else ((x - x.mean()) / std).tolist()


def screening_scores(candidates: Mapping[str, Mapping[str, float]]) -> dict[str, dict]:
    """Composite per candidate, from its macro_f1, rmse, rho_mean and quality.

    Score = 0.4 z(MacroF1) + 0.4 z_vad + 0.2 z(Quality), z_vad = [z(rho_VAD) - z(RMSE_VAD)] / 2. The halving keeps
    the weights summing to 1 and is what reproduces the paper's Table 1 (+0.6 / -0.6); the printed formula without
    it would give +1.0 / -1.0 there.
    """
    names = list(candidates)
    col = {k: zscores([candidates[m][k] for m in names]) for k in ("macro_f1", "rmse", "rho_mean", "quality")}
    out = {}
    for i, name in enumerate(names):
        z = {"z_f1": col["macro_f1"][i], "z_vad": (col["rho_mean"][i] - col["rmse"][i]) / 2,
             "z_quality": col["quality"][i]}
        out[name] = {k: round(v, DIGITS) for k, v in {**z, "composite": sum(SCREENING_WEIGHTS[k] * z[k]
                                                                            for k in z)}.items()}
    return out
