"""Scoring predictions against gold (docs/metrics.md): ParseOK, label P/R/F1 over the gold subspace K*, VAD error and
correlation, each the paper's way (valid outputs only) and the strict way (all N), the Ekman projection, the flip
symmetry S_flip, failure/coverage summaries and the checkpoint score S (the screening composite is
emoloom.core.composite).

Pure numpy. Every public function returns plain JSON-serialisable values, floats rounded to DIGITS decimals.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from emoloom.core.contract import MAX_RATIONALE_WORDS, ParseResult
from emoloom.core.labels import LABEL_INDEX, to_ekman

EPS = 1e-9
DIGITS = 4
VAD_KEYS = ("v", "a", "d")
NEUTRAL_VAD = {"v": 0.5, "a": 0.5, "d": 0.5}  # strict mode's VAD for an invalid output
# Quality = weighted mean of the three checks; these weights reproduce the paper's Table 1 quality column exactly.
QUALITY_WEIGHTS = {"q_json_ok": 0.5, "q_struct_ok": 0.3, "q_ratlen_ok": 0.2}


def _round(x, digits: int | None = DIGITS):
    """Floats rounded (recursively through dicts and lists); ints, bools, strings and None unchanged."""
    if digits is None:
        return x
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _round(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v, digits) for v in x]
    return x


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


# ---------------------------------------------------------------- labels

def gold_subspace(label_sets: Sequence[Sequence[str]]) -> list[str]:
    """K*: every label that occurs in at least one gold set, in canonical order (unknown names last, by name)."""
    present = {name for labels in label_sets for name in labels}
    return sorted(present, key=lambda k: (LABEL_INDEX.get(k, len(LABEL_INDEX)), k))


def label_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], space: Sequence[str],
                  digits: int | None = DIGITS) -> dict:
    """Macro/micro P, R, F1 and a per-label table over the labels in `space` (K*).

    P_k = TP/(TP+FP+eps), R_k = TP/(TP+FN+eps), F1_k = 2PR/(P+R+eps); macro = mean over `space`. Micro pools
    TP/FP/FN over `space`. Predicted labels outside `space` are counted (n_pred_outside) but score nowhere.
    label_coverage = share of `space` predicted at least once.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold rows but {len(pred)} predictions")
    col = {k: j for j, k in enumerate(space)}
    y = np.zeros((len(gold), len(space)), dtype=bool)
    y_hat = np.zeros_like(y)
    outside = 0
    for i, (g, p) in enumerate(zip(gold, pred)):
        y[i, [col[k] for k in set(g) if k in col]] = True
        y_hat[i, [col[k] for k in set(p) if k in col]] = True
        outside += len(set(p) - col.keys())
    tp, fp, fn = (y & y_hat).sum(0), (~y & y_hat).sum(0), (y & ~y_hat).sum(0)
    p, r = tp / (tp + fp + EPS), tp / (tp + fn + EPS)
    f1 = 2 * p * r / (p + r + EPS)
    mp, mr = tp.sum() / (tp.sum() + fp.sum() + EPS), tp.sum() / (tp.sum() + fn.sum() + EPS)
    return _round({
        "n": len(gold),
        "macro_f1": _mean(f1), "macro_p": _mean(p), "macro_r": _mean(r),
        "micro_f1": float(2 * mp * mr / (mp + mr + EPS)),
        "label_coverage": _mean((tp + fp) > 0),
        "n_pred_outside": outside,
        "per_label": {k: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f1[j]),
                          "support": int(tp[j] + fn[j])} for k, j in col.items()},
    }, digits)


# ---------------------------------------------------------------- VAD

def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson r; None when it is undefined (under 2 points, or either side constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    xc, yc = x - x.mean(), y - y.mean()
    return float(np.clip((xc @ yc) / math.sqrt((xc @ xc) * (yc @ yc)), -1.0, 1.0))


def vad_metrics(gold: Sequence[Mapping[str, float]], pred: Sequence[Mapping[str, float]],
                digits: int | None = DIGITS) -> dict:
    """RMSE = sqrt(sum ||v - v_hat||^2 / 3n), 1 - RMSE, RMSE per dimension, Pearson r per dimension and rho_mean.

    An undefined r (constant predictions or gold) is reported as 0.0 and its dimension listed in r_undefined:
    a constant predictor carries no linear information, and a NaN would poison rho_mean and the screening z-scores.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold VAD rows but {len(pred)} predictions")
    if not gold:
        return {"n": 0, "rmse": None, "one_minus_rmse": None, **{f"rmse_{k}": None for k in VAD_KEYS},
                **{f"r_{k}": None for k in VAD_KEYS}, "rho_mean": None, "r_undefined": []}
    g = np.array([[row[k] for k in VAD_KEYS] for row in gold], dtype=float)
    h = np.array([[row[k] for k in VAD_KEYS] for row in pred], dtype=float)
    sq = (g - h) ** 2
    rmse = math.sqrt(sq.mean())
    r = {k: pearson(g[:, j], h[:, j]) for j, k in enumerate(VAD_KEYS)}
    return _round({
        "n": len(gold), "rmse": rmse, "one_minus_rmse": 1.0 - rmse,
        **{f"rmse_{k}": math.sqrt(sq[:, j].mean()) for j, k in enumerate(VAD_KEYS)},
        **{f"r_{k}": r[k] or 0.0 for k in VAD_KEYS},
        "rho_mean": sum(r[k] or 0.0 for k in VAD_KEYS) / 3,
        "r_undefined": [k for k in VAD_KEYS if r[k] is None],
    }, digits)


# ---------------------------------------------------------------- evaluation

def _modes(gold_labels: list[list[str]], pred_labels: list[list[str]], valid: list[bool], space: list[str]) -> dict:
    """Label metrics the paper's way (valid rows only) and the strict way (all rows; invalid = empty set)."""
    keep = [i for i, ok in enumerate(valid) if ok]
    return {"paper": label_metrics([gold_labels[i] for i in keep], [pred_labels[i] for i in keep], space),
            "strict": label_metrics(gold_labels, pred_labels, space)}


def evaluate(gold_records: Sequence[Mapping], predictions: Sequence[ParseResult],
             ekman_mapping: Mapping[str, Sequence[str]] | None = None, top_k: int = 5) -> dict:
    """Score parsed outputs against gold records ({"labels": [...], "vad": {...} or None, ...}).

    predictions[i] is the ParseResult of example i; an input the caller could not run (truncated prompt, overflow)
    must be passed as an invalid ParseResult (ok=False, failure="input_overflow" or similar), so ParseOK stays over N.
    - paper: label and VAD metrics over the valid outputs only;
    - strict: over all N, an invalid output counting as the empty label set and the neutral VAD point NEUTRAL_VAD.
    K* comes from the gold of all N rows in both. Rows whose gold VAD is null are left out of VAD metrics in both
    (counted in n_gold_vad_missing). With `ekman_mapping`, the label metrics are repeated on the Ekman-7 projection.
    """
    if len(gold_records) != len(predictions):
        raise ValueError(f"{len(gold_records)} gold records but {len(predictions)} predictions")
    if any(p.ok and (p.labels is None or p.vad is None) for p in predictions):
        raise ValueError("a valid prediction must carry labels and vad")
    n = len(predictions)
    valid = [p.ok for p in predictions]
    gold_labels = [list(r["labels"]) for r in gold_records]
    pred_labels = [list(p.labels) if p.ok else [] for p in predictions]
    k_star = gold_subspace(gold_labels)
    labels = _modes(gold_labels, pred_labels, valid, k_star)

    with_vad = [i for i, r in enumerate(gold_records) if r.get("vad") is not None]
    gold_vad = {i: gold_records[i]["vad"] for i in with_vad}
    pred_vad = {i: p.vad if p.ok else NEUTRAL_VAD for i, p in enumerate(predictions)}
    paper_rows = [i for i in with_vad if valid[i]]
    vad = {"paper": vad_metrics([gold_vad[i] for i in paper_rows], [pred_vad[i] for i in paper_rows]),
           "strict": vad_metrics([gold_vad[i] for i in with_vad], [pred_vad[i] for i in with_vad])}

    predicted = {k for p in pred_labels for k in p}
    failures = Counter(p.failure or "unknown" for p in predictions if not p.ok)
    out = {
        "n": n, "n_valid": sum(valid), "parse_ok": round(sum(valid) / n, DIGITS) if n else None,
        "n_gold_vad_missing": n - len(with_vad),
        "k_star": k_star,
        **{mode: {"labels": labels[mode], "vad": vad[mode]} for mode in ("paper", "strict")},
        "never_predicted": [k for k in k_star if k not in predicted],
        "failures": dict(failures.most_common(top_k)),
    }
    if ekman_mapping is not None:
        gold_e = [to_ekman(g, ekman_mapping) for g in gold_labels]
        pred_e = [to_ekman(p, ekman_mapping) for p in pred_labels]
        k_e = gold_subspace(gold_e)
        out["ekman"] = {"k_star": k_e, **_modes(gold_e, pred_e, valid, k_e)}
    return out


def s_flip(pairs: Sequence[tuple[float | None, float | None]]) -> dict:
    """Flip symmetry: mean |(v(x) - 0.5) + (v(x') - 0.5)| over pairs of predicted valences (lower is better).

    A pair with a missing valence (an invalid output) is skipped and counted.
    """
    kept = [(v, w) for v, w in pairs if v is not None and w is not None]
    value = sum(abs((v - 0.5) + (w - 0.5)) for v, w in kept) / len(kept) if kept else None
    return _round({"s_flip": value, "n_pairs": len(kept), "n_skipped": len(pairs) - len(kept)})


# ---------------------------------------------------------------- composite scores

def composite_s(macro_f1: float, rmse: float, parse_ok: float, *, beta: float, gamma: float) -> float:
    """The checkpoint score of Algorithm 2: S = MacroF1 + beta (1 - RMSE) + gamma ParseOK."""
    return round(macro_f1 + beta * (1.0 - rmse) + gamma * parse_ok, DIGITS)


def quality_scores(results: Sequence[ParseResult]) -> dict:
    """Output quality over all N (paper Table 1):
    q_json_ok   the output parses under the contract (= ParseOK);
    q_struct_ok it parses, labels is non-empty and rationale is a string (all three keys present and typed);
    q_ratlen_ok it parses and the rationale has 1 to MAX_RATIONALE_WORDS (12) words;
    quality     the QUALITY_WEIGHTS mean of the three.
    """
    n = len(results)
    if not n:
        raise ValueError("no outputs to score")
    struct = [r.ok and bool(r.labels) and isinstance(r.rationale, str) for r in results]
    ratlen = [r.ok and isinstance(r.rationale, str) and 1 <= len(r.rationale.split()) <= MAX_RATIONALE_WORDS
              for r in results]
    q = {"q_json_ok": sum(r.ok for r in results) / n, "q_struct_ok": sum(struct) / n, "q_ratlen_ok": sum(ratlen) / n}
    q["quality"] = sum(QUALITY_WEIGHTS[k] * q[k] for k in QUALITY_WEIGHTS)
    return _round(q)


# ---------------------------------------------------------------- seeds

def _numbers(d: Mapping, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict, keyed by dotted path (bools and None left out)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def mean_std(runs: Sequence[Mapping]) -> dict[str, list[float]]:
    """metric -> [mean, std] across runs (e.g. seeds), over the numeric leaves present in every run.

    Nested keys are dotted ("paper.labels.macro_f1"); std is the sample std (ddof=1), 0.0 for a single run.
    """
    flat = [_numbers(run) for run in runs]
    if not flat:
        return {}
    keys = [k for k in flat[0] if all(k in f for f in flat[1:])]
    out = {}
    for k in keys:
        x = np.array([f[k] for f in flat])
        out[k] = [float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0]
    return _round(out)
