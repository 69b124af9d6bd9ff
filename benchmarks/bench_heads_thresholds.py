"""How the heads' refit picks its decision thresholds: per label (the default), one global cut, or per label only
where the held-out fifth has enough positives (docs/training.md, "Where the errors are").

    .venv/bin/python benchmarks/bench_heads_thresholds.py --mixture 80_20 --dev-rows 900

A trained run's model (data/sft/<mixture>-s11/model) pools its features for `--train-rows` seeded training rows (as
the loop's refit does at export, on its own sample) and for the first dev rows. Fresh heads (standardised on those
training features, prior biases, zero weights) are refitted as `heads_fit.refit_heads` does — same held-out fifth,
same epoch choice — and each threshold rule is folded in and scored on the dev rows: macro-F1 (strict over the gold
subspace) and labels per row.
Needs `dvc repro sft@<mixture>-11`.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_heads import targets  # noqa: E402

from emoloom.core.io import read_jsonl  # noqa: E402
from emoloom.core.labels import LABELS  # noqa: E402
from emoloom.evaluation.baselines import best_threshold  # noqa: E402
from emoloom.evaluation.runner import EvalConfig  # noqa: E402
from emoloom.evaluation.screening import pooled_features  # noqa: E402
from emoloom.modeling.model import Heads, load_bundle  # noqa: E402
from emoloom.training.heads_fit import (  # noqa: E402
    HOLDOUT,
    _fit,
    _fold_thresholds,
    _macro_f1,
    refit_heads,
    reset_heads,
)

GRID = np.round(np.arange(0.02, 0.91, 0.02), 2)


def global_cut(scores: np.ndarray, y: torch.Tensor, heads: Heads, x: torch.Tensor) -> float:
    """The one cut that maximises the held-out macro-F1 (heads' decision rule, argmax fallback included)."""
    best, best_f1 = 0.5, -1.0
    for g in GRID:
        trial = copy.deepcopy(heads)
        _fold_thresholds(trial, np.full(scores.shape[1], g))
        f1 = _macro_f1(trial, x, y)
        if f1 > best_f1:
            best, best_f1 = float(g), f1
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixture", default="20_80")
    ap.add_argument("--train-rows", type=int, default=768)
    ap.add_argument("--dev-rows", type=int, default=900)
    ap.add_argument("--min-positives", type=int, default=5, help="guarded rule: per-label cut only with this many")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer, info = load_bundle(REPO / f"data/sft/{args.mixture}-s11/model")
    mix = REPO / "data/mix" / args.mixture
    train = random.Random(0).sample(list(read_jsonl(mix / "train.jsonl")), args.train_rows)
    dev = list(read_jsonl(mix / "dev.jsonl"))[:args.dev_rows]
    start = time.perf_counter()
    cfg = EvalConfig(max_len=384)
    x, x_dev = pooled_features(model.lm, tokenizer, train, cfg, 32), pooled_features(model.lm, tokenizer, dev, cfg, 32)
    print(f"features of {len(train)} train + {len(dev)} dev rows: {time.perf_counter() - start:.0f} s, "
          f"{args.threads} torch threads")
    (y, v), (y_dev, _) = targets(train), targets(dev)

    fresh = Heads(x.size(1))
    reset_heads(fresh, x, y, v)
    per_label = copy.deepcopy(fresh)
    chosen = refit_heads(per_label, x, y, v, seed=11)                     # the default rule, end to end
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(11))
    held, fit = order[:int(HOLDOUT * len(x))], order[int(HOLDOUT * len(x)):]
    trial = copy.deepcopy(fresh)
    _fit(trial, x[fit], y[fit], v[fit], chosen["epochs"])
    with torch.no_grad():
        scores = torch.sigmoid(trial(x[held])[0]).numpy()
    positives = y[held].sum(0).numpy()
    cut = global_cut(scores, y[held], trial, x[held])
    own = np.array([best_threshold(scores[:, k], y[held, k].numpy()) if positives[k] else 0.5
                    for k in range(y.size(1))])
    rules = {"per label (default)": None, "0.5 everywhere": np.full(y.size(1), 0.5),
             f"global cut {cut:.2f}": np.full(y.size(1), cut),
             f"per label if >= {args.min_positives} held-out positives, else global":
                 np.where(positives >= args.min_positives, own, cut)}
    print(f"refit: {chosen['epochs']} epochs; held-out positives per label: median {np.median(positives):.0f}, "
          f"{int((positives < args.min_positives).sum())} of {len(positives)} labels below {args.min_positives}\n")
    print("| threshold rule | dev macro-F1 | labels per row (gold "
          f"{y_dev.sum(1).mean():.2f}) | most over-predicted label |")
    print("|---|---:|---:|---|")
    for name, thresholds in rules.items():
        heads = per_label
        if thresholds is not None:
            heads = copy.deepcopy(fresh)
            _fit(heads, x, y, v, chosen["epochs"])
            _fold_thresholds(heads, thresholds)
        with torch.no_grad():
            predicted = (torch.sigmoid(heads(x_dev)[0]) >= 0.5).float()
        worst = int((predicted.sum(0) - y_dev.sum(0)).argmax())
        print(f"| {name} | {_macro_f1(heads, x_dev, y_dev):.3f} | {predicted.sum(1).clamp_min(1).mean():.2f} | "
              f"{LABELS[worst]} {int(predicted[:, worst].sum())} vs {int(y_dev[:, worst].sum())} gold |")


if __name__ == "__main__":
    main()
