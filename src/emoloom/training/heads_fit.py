"""The heads' refit at export (sft.train.heads_refit_rows): a CPU budget gives the jointly trained heads only a few
dozen updates, far from a fitted linear read-out. After training, the exported weights compute the pooled features of
a seeded sample of training prompts (`refit_sample`: each source's share as in the mixture); the heads are
re-initialised on them (standardisation, prior biases, zero weights) and fitted for many full-batch epochs (on the CPU),
and each label gets the decision threshold that maximises its F1 on a held-out fifth (the TF-IDF baseline tunes its
thresholds the same way, on training data only). A threshold t is folded into the label's bias (logit -= logit(t)), so
the heads' usual rule, p >= 0.5, applies it. docs/training.md has the measurements.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import torch

from emoloom.core.labels import LABELS
from emoloom.evaluation.baselines import best_threshold
from emoloom.evaluation.metrics import gold_subspace, label_metrics
from emoloom.modeling import losses
from emoloom.modeling.model import Heads, heads_decisions

EPOCH_CHOICES, LR, HOLDOUT = (0, 5, 10, 25, 50, 100), 0.05, 0.2


def _fit(heads: Heads, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, epochs: int) -> None:
    opt = torch.optim.Adam(heads.parameters(), lr=LR)
    for _ in range(epochs):
        label_logits, vad = heads(x)
        loss = losses.cls_loss(label_logits, y) + losses.reg_loss(vad, v)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _macro_f1(heads: Heads, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        answers = heads_decisions(*heads(x))
    gold = [[LABELS[k] for k in row.nonzero().flatten().tolist()] for row in y]
    return label_metrics(gold, [a["labels"] for a in answers], gold_subspace(gold))["macro_f1"] or 0.0


def _fold_thresholds(heads: Heads, thresholds: np.ndarray) -> None:
    with torch.no_grad():
        t = torch.as_tensor(thresholds, dtype=heads.labels.bias.dtype).clamp(1e-4, 1 - 1e-4)
        heads.labels.bias -= torch.logit(t)


def _trial(heads: Heads, x, y, v, fit, held, epochs: int) -> tuple[float, np.ndarray]:
    """Fit a copy on the fit rows; tune per-label thresholds on the held-out rows; its held-out macro-F1 there."""
    trial = copy.deepcopy(heads)
    _fit(trial, x[fit], y[fit], v[fit], epochs)
    with torch.no_grad():
        scores = torch.sigmoid(trial(x[held])[0]).numpy()
    thresholds = np.array([best_threshold(scores[:, k], y[held, k].numpy()) if y[held, k].any() else 0.5
                           for k in range(y.size(1))])
    _fold_thresholds(trial, thresholds)
    return _macro_f1(trial, x[held], y[held]), thresholds


def refit_sample(examples: dict[str, list], mixture: dict[str, float], rows: int, seed: int,
                 reused: dict[str, list] | None = None) -> list:
    """A seeded sample of about `rows` training examples, each source's share as in the mixture (as in dev). The
    examples of `reused` (source -> examples whose features are at hand) come first, up to their source's share; a
    seeded draw of the others fills it."""
    rng, total, reused = random.Random(seed), sum(mixture.values()), reused or {}
    sample = []
    for s, w in sorted(mixture.items()):
        if w <= 0:
            continue
        n = round(rows * w / total)
        first = reused.get(s, [])[:n]
        taken = {id(ex) for ex in first}
        others = [ex for ex in examples[s] if id(ex) not in taken]
        sample += first + rng.sample(others, min(n - len(first), len(others)))
    return sample


def reset_heads(heads: Heads, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> None:
    """Start the heads afresh on these rows: their standardisation and prior biases, zero weights."""
    with torch.no_grad():
        heads.labels.weight.zero_()
        heads.vad.weight.zero_()
    heads.init_from_data(x, y, v)


def refit_heads(heads: Heads, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, seed: int) -> dict:
    """Refit `heads` in place on (features, labels, vad): re-initialised from them (standardisation, prior biases,
    zero weights), then the epoch count and per-label thresholds that do best on a held-out fifth, then a fit
    on every row with them, thresholds folded into the bias. Returns what was chosen for the decision log (held-out F1
    with thresholds tuned there: optimistic, for comparison; `before`: the jointly trained heads on the same rows)."""
    device = heads.feature_mean.device
    heads.cpu()
    x, y, v = x.float().cpu(), y.float().cpu(), v.float().cpu()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    held, fit = order[:int(HOLDOUT * len(x))], order[int(HOLDOUT * len(x)):]
    before = _macro_f1(heads, x[held], y[held])
    reset_heads(heads, x, y, v)
    with torch.enable_grad():
        trials = {epochs: _trial(heads, x, y, v, fit, held, epochs) for epochs in EPOCH_CHOICES}
        epochs = max(trials, key=lambda e: trials[e][0])
        _fit(heads, x, y, v, epochs)
    _fold_thresholds(heads, trials[epochs][1])
    heads.to(device)
    return {"rows": len(x), "epochs": epochs, "held_out_macro_f1_before": round(before, 4),
            "held_out_macro_f1_tuned": {e: round(f, 4) for e, (f, _) in trials.items()}}
