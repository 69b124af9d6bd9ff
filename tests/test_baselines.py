import json

import numpy as np
import pytest

from emoloom.core.contract import canonical_labels
from emoloom.core.io import read_jsonl
from emoloom.core.labels import sort_labels
from emoloom.data.convert import convert_file
from emoloom.data.corpora import ReadOptions
from emoloom.data.weak_vad import WeakVadConfig, score_text
from emoloom.evaluation.baselines import (
    baseline_report,
    best_threshold,
    constant_vad,
    fit_tfidf_labels,
    lexicon_vad,
    predict_labels,
)


@pytest.fixture(scope="module")
def goemotions(small_raw_root, nrc, tmp_path_factory):
    """Real GoEmotions train/dev records (the small raw subset, QC'd and weak-VAD annotated like the pipeline)."""
    out = tmp_path_factory.mktemp("baselines")
    splits = {}
    for split in ("train", "dev"):
        path = out / f"{split}.jsonl"
        convert_file(small_raw_root / "goemotions" / f"{split}.tsv", path, "goemotions", split, ReadOptions(), nrc,
                     WeakVadConfig())
        splits[split] = list(read_jsonl(path))
    return splits


@pytest.fixture(scope="module")
def ekman(small_raw_root):
    return json.loads((small_raw_root / "goemotions" / "ekman_mapping.json").read_text())


def test_best_threshold():
    assert best_threshold(np.array([0.9, 0.8, 0.7, 0.2]), np.array([1, 1, 0, 0])) == pytest.approx(0.75)
    # tied scores cannot be split: the best cut keeps both 0.5s
    assert best_threshold(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0])) == pytest.approx(0.3)
    # the positive is ranked below every negative: no cut reaches F1 > 0, keep the default
    assert best_threshold(np.array([0.9, 0.1]), np.array([0, 1])) == 0.5


def test_constant_and_lexicon_vad(nrc):
    train = [{"text": "x", "vad": {"v": 0.2, "a": 0.4, "d": 0.6}}, {"text": "y", "vad": None},
             {"text": "z", "vad": {"v": 0.6, "a": 0.8, "d": 0.2}}]
    mean = constant_vad(train)
    assert mean == pytest.approx({"v": 0.4, "a": 0.6, "d": 0.4})
    out = lexicon_vad([{"text": "what a happy day"}, {"text": "zzqx qqzx"}], nrc, mean)
    assert out[0] == score_text("what a happy day", nrc).vad and out[0]["v"] > 0.7
    assert out[1] == mean                                                # nothing matched: the train mean
    with pytest.raises(ValueError):
        constant_vad([{"text": "y", "vad": None}])


def test_tfidf_beats_always_neutral_on_real_rows(goemotions, nrc, ekman):
    train, dev = goemotions["train"], goemotions["dev"]
    assert len(train) > 400 and len(dev) > 100
    rep = baseline_report(train, dev, nrc, seed=0, ekman_mapping=ekman)
    tfidf, neutral = rep["labels"]["tfidf_lr"], rep["labels"]["always_neutral"]
    assert tfidf["macro_f1"] > neutral["macro_f1"] + 0.05
    assert rep["ekman"]["tfidf_lr"]["macro_f1"] > rep["ekman"]["always_neutral"]["macro_f1"]
    assert rep["n_eval"] == len(dev) and rep["k_star"] == sort_labels(k for r in dev for k in r["labels"])
    # the dev gold VAD is this lexicon's own weak VAD, so the lexicon baseline reproduces it exactly
    assert rep["vad"]["lexicon"]["rmse"] == 0.0
    assert 0 < rep["vad"]["constant_mean"]["rmse"] < 0.3 and rep["vad"]["constant_mean"]["rho_mean"] == 0.0
    json.dumps(rep)


def test_tfidf_is_deterministic_and_always_predicts(goemotions):
    train, dev = goemotions["train"], goemotions["dev"]
    a, b = fit_tfidf_labels(train, seed=3), fit_tfidf_labels(train, seed=3)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    pred = predict_labels(a, dev)
    assert pred == predict_labels(b, dev)
    assert all(p and p == canonical_labels(p) for p in pred)            # at least one label, canonical order
    assert set(a.labels) == {k for r in train for k in r["labels"]}      # one classifier per label seen in train
