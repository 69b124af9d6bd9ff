"""Reference systems, scored with emoloom.evaluation.metrics on the same rows as the model (docs/metrics.md).

- constant-mean VAD: the train mean of the gold (weak) VAD, for every row;
- lexicon-only VAD: score_text on the row's text (the lexicon's own guess), the train mean where nothing matches;
- TF-IDF + one-vs-rest logistic regression labels, per-label thresholds tuned on out-of-fold train scores;
- always-neutral labels: the trivial floor.
All are deterministic for a given seed and record order, and always "valid" (paper = strict for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from emoloom.core.labels import LABELS, to_ekman
from emoloom.data.lexicon import Lexicon
from emoloom.data.weak_vad import WeakVadConfig, score_text
from emoloom.evaluation.metrics import VAD_KEYS, gold_subspace, label_metrics, vad_metrics

TFIDF = dict(ngram_range=(1, 2), min_df=2, max_features=100_000, sublinear_tf=True)
C = 4.0           # inverse L2 strength of each per-label logistic regression
CV_FOLDS = 3      # folds of the out-of-fold train scores the thresholds are tuned on


@dataclass
class TfidfLabelModel:
    vectorizer: TfidfVectorizer
    labels: list[str]             # labels with at least one positive train row, canonical order
    coef: np.ndarray              # (len(labels), n_features)
    intercept: np.ndarray         # (len(labels),)
    thresholds: np.ndarray        # (len(labels),) decision thresholds on the predicted probability

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """P(label | text), shape (len(texts), len(labels))."""
        x = self.vectorizer.transform(texts)
        return 1.0 / (1.0 + np.exp(-(x @ self.coef.T + self.intercept)))


def _fit_one(x: csr_matrix, y: np.ndarray, seed: int) -> tuple[np.ndarray, float] | None:
    """Weights and bias of one binary logistic regression, or None when y has a single class."""
    if y.min() == y.max():
        return None
    clf = LogisticRegression(C=C, solver="liblinear", dual=True, random_state=seed).fit(x, y)
    return clf.coef_[0], float(clf.intercept_[0])


def best_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The probability cut maximising F1 of (scores >= cut) against y: the midpoint between two distinct scores.

    Cutting below every row is not allowed; when no cut reaches F1 > 0 (the positives are not ranked above any
    negative) the logistic default 0.5 is returned.
    """
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], np.cumsum(y[order])
    f1 = 2 * hits / (np.arange(1, s.size + 1) + y.sum())          # f1[i]: the top i+1 rows predicted positive
    f1[:-1][s[:-1] == s[1:]] = -1.0                                # a cut can only fall between distinct scores
    f1[-1] = -1.0
    i = int(np.argmax(f1))
    return float((s[i] + s[i + 1]) / 2) if f1[i] > 0 else 0.5


def fit_tfidf_labels(train_records: Sequence[Mapping], seed: int = 0) -> TfidfLabelModel:
    """TF-IDF (word 1-2 grams) + one logistic regression per label, thresholds tuned on train only.

    Each label's threshold maximises its F1 on out-of-fold train probabilities (CV_FOLDS seeded folds), then every
    label is refit on all of train. The dev split is never seen.
    """
    texts = [r["text"] for r in train_records]
    y = np.array([[name in r["labels"] for name in LABELS] for r in train_records], dtype=int)
    labels = [j for j in range(len(LABELS)) if y[:, j].any()]
    oof = np.zeros((len(texts), len(labels)))
    for fit_rows, held_rows in KFold(CV_FOLDS, shuffle=True, random_state=seed).split(texts):
        vec = TfidfVectorizer(**TFIDF)
        x_fit = vec.fit_transform([texts[i] for i in fit_rows])
        x_held = vec.transform([texts[i] for i in held_rows])
        for c, j in enumerate(labels):
            model = _fit_one(x_fit, y[fit_rows, j], seed)
            if model is not None:
                oof[held_rows, c] = 1.0 / (1.0 + np.exp(-(x_held @ model[0] + model[1])))
    vectorizer = TfidfVectorizer(**TFIDF)
    x = vectorizer.fit_transform(texts)
    fits = [_fit_one(x, y[:, j], seed) for j in labels]
    keep = [c for c, f in enumerate(fits) if f is not None]
    return TfidfLabelModel(
        vectorizer=vectorizer,
        labels=[LABELS[labels[c]] for c in keep],
        coef=np.array([fits[c][0] for c in keep]),
        intercept=np.array([fits[c][1] for c in keep]),
        thresholds=np.array([best_threshold(oof[:, c], y[:, labels[c]]) for c in keep]),
    )


def predict_labels(model: TfidfLabelModel, records: Sequence[Mapping]) -> list[list[str]]:
    """Labels whose probability reaches their threshold; when none does, the one closest to it (max p / threshold)."""
    p = model.scores([r["text"] for r in records])
    hit = p >= model.thresholds
    top = np.argmax(p / model.thresholds, axis=1)
    hit[np.arange(len(records)), top] |= ~hit.any(axis=1)
    return [[model.labels[c] for c in np.flatnonzero(row)] for row in hit]


def constant_vad(train_records: Sequence[Mapping]) -> dict[str, float]:
    """Mean gold VAD over the train rows that have one."""
    rows = [[r["vad"][k] for k in VAD_KEYS] for r in train_records if r.get("vad") is not None]
    if not rows:
        raise ValueError("no train row has a VAD")
    return dict(zip(VAD_KEYS, np.mean(rows, axis=0).tolist()))


def lexicon_vad(records: Sequence[Mapping], lexicon: Lexicon, fallback: Mapping[str, float],
                cfg: WeakVadConfig = WeakVadConfig()) -> list[dict[str, float]]:
    """The lexicon's VAD of each text (emoloom.data.weak_vad.score_text), `fallback` where no term matches."""
    return [score_text(r["text"], lexicon, cfg).vad or dict(fallback) for r in records]


def baseline_report(train_records: Sequence[Mapping], eval_records: Sequence[Mapping], lexicon: Lexicon,
                    seed: int = 0, cfg: WeakVadConfig = WeakVadConfig(),
                    ekman_mapping: Mapping[str, Sequence[str]] | None = None,
                    tfidf: TfidfLabelModel | None = None) -> dict:
    """Label metrics of tfidf_lr and always_neutral, VAD metrics of constant_mean and lexicon, on eval_records.

    K* is the eval gold's; rows with null gold VAD are left out of the VAD metrics (n_gold_vad_missing). With the
    same lexicon and cfg that made a weak gold VAD, the lexicon baseline reproduces that gold exactly.
    """
    gold = [list(r["labels"]) for r in eval_records]
    tfidf = tfidf or fit_tfidf_labels(train_records, seed)          # pass a fitted one to score several row sets
    preds = {"tfidf_lr": predict_labels(tfidf, eval_records),
             "always_neutral": [["neutral"]] * len(eval_records)}
    space = gold_subspace(gold)
    rows = [r for r in eval_records if r.get("vad") is not None]
    mean = constant_vad(train_records)
    report = {
        "n_train": len(train_records), "n_eval": len(eval_records), "n_gold_vad_missing": len(eval_records) - len(rows),
        "k_star": space,
        "train_vad_mean": {k: round(v, 4) for k, v in mean.items()},
        "labels": {name: label_metrics(gold, p, space) for name, p in preds.items()},
        "vad": {"constant_mean": vad_metrics([r["vad"] for r in rows], [mean] * len(rows)),
                "lexicon": vad_metrics([r["vad"] for r in rows], lexicon_vad(rows, lexicon, mean, cfg))},
    }
    if ekman_mapping is not None:
        gold_e = [to_ekman(g, ekman_mapping) for g in gold]
        space_e = gold_subspace(gold_e)
        report["ekman"] = {name: label_metrics(gold_e, [to_ekman(x, ekman_mapping) for x in p], space_e)
                           for name, p in preds.items()}
    return report
