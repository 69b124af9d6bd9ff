import json
import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import f1_score, mean_squared_error, precision_score, recall_score

from emoloom.core.composite import screening_scores, zscores
from emoloom.core.contract import ParseResult, build_target, parse_output
from emoloom.core.labels import LABELS
from emoloom.evaluation.metrics import (
    NEUTRAL_VAD,
    QUALITY_WEIGHTS,
    composite_s,
    evaluate,
    gold_subspace,
    label_metrics,
    mean_std,
    pearson,
    quality_scores,
    s_flip,
    vad_metrics,
)


def vad(v, a, d):
    return {"v": v, "a": a, "d": d}


def ok(labels, v):
    return ParseResult(True, labels, v, "cue signals it")


def bad(failure="truncated"):
    return ParseResult(False, failure=failure)


# ---------------------------------------------------------------- labels

def test_label_metrics_hand_case():
    gold = [["joy"], ["joy", "anger"], ["anger"], ["fear"]]
    pred = [["joy"], ["anger"], ["joy"], []]
    m = label_metrics(gold, pred, gold_subspace(gold))
    assert list(m["per_label"]) == ["anger", "fear", "joy"]          # canonical order
    assert m["per_label"]["joy"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_label"]["anger"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert m["per_label"]["fear"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert (m["macro_f1"], m["macro_p"], m["macro_r"]) == (0.3889, 0.5, 0.3333)
    assert m["micro_f1"] == 0.5                                       # TP 2, FP 1, FN 3
    assert m["label_coverage"] == 0.6667 and m["n_pred_outside"] == 0


def test_label_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random((300, len(LABELS))) < 0.08
    y[:, 5] = False                                                   # not in K*
    y_hat = (rng.random(y.shape) < 0.1) | (y & (rng.random(y.shape) < 0.5))
    y_hat[:, 7] = False                                               # never predicted: zero_division
    gold = [[LABELS[j] for j in np.flatnonzero(row)] for row in y]
    pred = [[LABELS[j] for j in np.flatnonzero(row)] for row in y_hat]
    space = gold_subspace(gold)
    cols = [LABELS.index(k) for k in space]
    assert len(space) == len(LABELS) - 1
    m = label_metrics(gold, pred, space, digits=None)
    ours = {name: np.array([m["per_label"][k][name] for k in space]) for name in ("precision", "recall", "f1")}
    kw = dict(average=None, zero_division=0)
    np.testing.assert_allclose(ours["precision"], precision_score(y[:, cols], y_hat[:, cols], **kw), atol=1e-8)
    np.testing.assert_allclose(ours["recall"], recall_score(y[:, cols], y_hat[:, cols], **kw), atol=1e-8)
    np.testing.assert_allclose(ours["f1"], f1_score(y[:, cols], y_hat[:, cols], **kw), atol=1e-8)
    assert m["macro_f1"] == pytest.approx(f1_score(y[:, cols], y_hat[:, cols], average="macro", zero_division=0))
    assert m["micro_f1"] == pytest.approx(f1_score(y[:, cols], y_hat[:, cols], average="micro"))
    assert m["n_pred_outside"] == int(y_hat[:, 5].sum())


# ---------------------------------------------------------------- VAD

def test_vad_metrics_agree_with_sklearn_and_scipy():
    rng = np.random.default_rng(1)
    g, h = rng.random((200, 3)), rng.random((200, 3))
    h = 0.5 * h + 0.5 * g
    m = vad_metrics([vad(*row) for row in g], [vad(*row) for row in h], digits=None)
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(g.ravel(), h.ravel())))
    assert m["one_minus_rmse"] == pytest.approx(1 - m["rmse"])
    for j, k in enumerate("vad"):
        assert m[f"rmse_{k}"] == pytest.approx(math.sqrt(mean_squared_error(g[:, j], h[:, j])))
        assert m[f"r_{k}"] == pytest.approx(pearsonr(g[:, j], h[:, j])[0])
    assert m["rho_mean"] == pytest.approx(np.mean([pearsonr(g[:, j], h[:, j])[0] for j in range(3)]))
    assert m["r_undefined"] == []


def test_pearson_undefined_cases():
    assert pearson([0.1, 0.5, 0.9], [0.4, 0.4, 0.4]) is None
    assert pearson([0.3], [0.2]) is None
    m = vad_metrics([vad(0.1, 0.2, 0.3), vad(0.9, 0.8, 0.7)], [vad(0.5, 0.5, 0.5)] * 2)
    assert (m["r_v"], m["rho_mean"], m["r_undefined"]) == (0.0, 0.0, ["v", "a", "d"])
    assert vad_metrics([], [])["rmse"] is None


# ---------------------------------------------------------------- paper vs strict

GOLD = [
    {"labels": ["joy"], "vad": vad(0.8, 0.6, 0.7)},
    {"labels": ["anger"], "vad": vad(0.2, 0.8, 0.4)},
    {"labels": ["joy"], "vad": vad(0.9, 0.5, 0.6)},
    {"labels": ["anger"], "vad": None},
]
PRED = [ok(["joy"], vad(0.7, 0.6, 0.7)), ok(["joy"], vad(0.2, 0.6, 0.4)), bad("truncated"),
        ok(["anger"], vad(0.5, 0.5, 0.5))]


def test_paper_and_strict_differ_as_designed():
    out = evaluate(GOLD, PRED)
    assert (out["n"], out["n_valid"], out["parse_ok"], out["n_gold_vad_missing"]) == (4, 3, 0.75, 1)
    paper, strict = out["paper"], out["strict"]
    # paper: rows 0, 1, 3. joy TP1 FP1 FN0 -> F1 2/3; anger TP1 FP0 FN1 -> F1 2/3
    assert paper["labels"]["n"] == 3 and paper["labels"]["macro_f1"] == 0.6667
    # strict: row 2 predicts nothing, so joy also has FN1 -> F1 1/2
    assert strict["labels"]["n"] == 4 and strict["labels"]["macro_f1"] == 0.5833
    assert strict["labels"]["per_label"]["joy"]["f1"] == 0.5
    # paper VAD: rows 0, 1 (row 3 has no gold VAD): squared errors .01 + .04 over 3*2
    assert paper["vad"]["n"] == 2 and paper["vad"]["rmse"] == round(math.sqrt(0.05 / 6), 4)
    # strict VAD: rows 0, 1, 2; row 2 is scored at the neutral point (0.5, 0.5, 0.5): .16 + .01 more, over 3*3
    assert NEUTRAL_VAD == vad(0.5, 0.5, 0.5)
    assert strict["vad"]["n"] == 3 and strict["vad"]["rmse"] == round(math.sqrt(0.22 / 9), 4)
    assert paper["vad"]["r_v"] == 1.0 and paper["vad"]["r_a"] == 0.0 and paper["vad"]["r_undefined"] == ["a"]
    assert out["failures"] == {"truncated": 1}
    assert out["k_star"] == ["anger", "joy"] and out["never_predicted"] == []
    json.dumps(out)


def test_all_valid_makes_paper_equal_strict():
    preds = [ok(["joy"], vad(0.7, 0.6, 0.7)), ok(["anger"], vad(0.2, 0.6, 0.4)), ok([], vad(0.1, 0.2, 0.3)),
             ok(["anger", "fear"], vad(0.5, 0.5, 0.5))]
    out = evaluate(GOLD, preds)
    assert out["paper"] == out["strict"] and out["parse_ok"] == 1.0 and out["failures"] == {}
    assert out["paper"]["labels"]["n_pred_outside"] == 1                  # "fear" is not in K*


def test_k_star_comes_from_all_n():
    gold = [{"labels": ["joy"], "vad": None}, {"labels": ["grief"], "vad": None}]
    out = evaluate(gold, [ok(["joy"], vad(0.9, 0.5, 0.5)), bad("no_json")])
    assert out["k_star"] == ["grief", "joy"]
    # grief lives only on the invalid row, yet it stays in K* for the paper's macro average (support 0, F1 0)
    assert out["paper"]["labels"]["per_label"]["grief"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert out["paper"]["labels"]["macro_f1"] == 0.5
    assert out["never_predicted"] == ["grief"] and out["paper"]["labels"]["label_coverage"] == 0.5
    assert out["paper"]["vad"]["n"] == 0 and out["n_gold_vad_missing"] == 2


def test_ekman_projection():
    ekman = {"anger": ["anger", "annoyance"], "joy": ["joy", "gratitude"], "sadness": ["sadness"]}
    gold = [{"labels": ["annoyance"], "vad": None}, {"labels": ["gratitude", "neutral"], "vad": None},
            {"labels": ["sadness"], "vad": None}]
    preds = [ok(["anger"], vad(0.5, 0.5, 0.5)), ok(["joy"], vad(0.5, 0.5, 0.5)), bad()]
    out = evaluate(gold, preds, ekman_mapping=ekman)
    assert out["paper"]["labels"]["macro_f1"] == 0.0                     # no fine-grained hit at all
    e = out["ekman"]
    assert e["k_star"] == ["anger", "joy", "sadness", "neutral"]
    assert e["paper"]["per_label"]["anger"]["f1"] == 1.0 and e["paper"]["per_label"]["joy"]["f1"] == 1.0
    assert e["paper"]["per_label"]["neutral"]["recall"] == 0.0
    assert e["paper"]["macro_f1"] == 0.5 and e["strict"]["macro_f1"] == 0.5   # sadness: F1 0 both ways
    assert e["paper"]["per_label"]["sadness"]["support"] == 0 and e["strict"]["per_label"]["sadness"]["support"] == 1


def test_evaluate_on_parsed_outputs():
    texts = [build_target(["joy"], vad(0.8, 0.6, 0.7), ["happy"]),
             'Sure! {"labels": ["anger"], "vad": {"v": 0.2, "a": 0.8, "d": 0.4}} done',
             '{"labels": ["joy"], "vad": {"v": 0.9',
             "I think it is joy."]
    preds = [parse_output(t) for t in texts]
    out = evaluate(GOLD, preds, top_k=1)
    assert out["n_valid"] == 2 and out["paper"]["labels"]["macro_f1"] == 1.0
    assert out["failures"] == {"truncated": 1}                           # top_k=1 of {truncated: 1, no_json: 1}
    q = quality_scores(preds)
    assert (q["q_json_ok"], q["q_struct_ok"], q["q_ratlen_ok"]) == (0.5, 0.25, 0.25)


def test_evaluate_rejects_bad_input():
    with pytest.raises(ValueError):
        evaluate(GOLD, PRED[:3])
    with pytest.raises(ValueError):
        evaluate(GOLD[:1], [ParseResult(True, ["joy"], None)])


# ---------------------------------------------------------------- diagnostics and composites

def test_s_flip():
    out = s_flip([(0.8, 0.3), (0.6, 0.6), (None, 0.2)])
    assert out == {"s_flip": 0.15, "n_pairs": 2, "n_skipped": 1}
    assert s_flip([(0.9, 0.1), (0.25, 0.75)])["s_flip"] == 0.0          # perfectly mirrored
    assert s_flip([])["s_flip"] is None


def test_composite_s():
    assert composite_s(0.35, 0.06, 1.0, beta=0.5, gamma=0.1) == 0.92


def test_quality_definitions():
    results = [ParseResult(True, ["joy"], vad(0.5, 0.5, 0.5), "smile signals joy"),
               ParseResult(True, ["joy"], vad(0.5, 0.5, 0.5), " ".join(["word"] * 13)),
               ParseResult(True, [], vad(0.5, 0.5, 0.5), "nothing"),
               ParseResult(True, ["joy"], vad(0.5, 0.5, 0.5), None),
               bad("bad_json")]
    q = quality_scores(results)
    assert (q["q_json_ok"], q["q_struct_ok"], q["q_ratlen_ok"]) == (0.8, 0.4, 0.4)
    assert q["quality"] == round(0.5 * 0.8 + 0.3 * 0.4 + 0.2 * 0.4, 4)


def test_screening_reproduces_paper_table_1():
    table = {  # macro_f1, rmse_mean, rho_mean, q_json_ok, q_struct_ok, q_ratlen_ok, quality (paper, Table 1)
        "qwen-1.8b-chat": (0.0403, 0.2586, 0.2407, 0.6221, 0.2754, 0.0107, 0.3958),
        "internlm2-1.8b-sft": (0.0214, 0.2747, 0.2272, 0.7383, 0.3564, 0.1318, 0.5024),
    }
    for row in table.values():                                          # the quality column is the weighted mean
        assert sum(w * q for w, q in zip(QUALITY_WEIGHTS.values(), row[3:6])) == pytest.approx(row[6], abs=5e-5)
    scores = screening_scores({name: {"macro_f1": r[0], "rmse": r[1], "rho_mean": r[2], "quality": r[6]}
                               for name, r in table.items()})
    assert scores["qwen-1.8b-chat"] == {"z_f1": 1.0, "z_vad": 1.0, "z_quality": -1.0, "composite": 0.6}
    assert scores["internlm2-1.8b-sft"] == {"z_f1": -1.0, "z_vad": -1.0, "z_quality": 1.0, "composite": -0.6}


def test_zscores_degenerate():
    assert zscores([0.4]) == [0.0]
    assert zscores([0.3, 0.3, 0.3]) == [0.0, 0.0, 0.0]
    assert zscores([1.0, 2.0, 3.0]) == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
    one = screening_scores({"only": {"macro_f1": 0.3, "rmse": 0.2, "rho_mean": 0.4, "quality": 0.9}})
    assert one["only"]["composite"] == 0.0


def test_mean_std():
    runs = [{"a": 1.0, "b": {"c": 2}, "flag": True, "only_here": 3.0, "r": None},
            {"a": 3.0, "b": {"c": 2}, "flag": False, "r": None}]
    assert mean_std(runs) == {"a": [2.0, 1.4142], "b.c": [2.0, 0.0]}
    assert mean_std(runs[:1])["a"] == [1.0, 0.0]
    seeds = [evaluate(GOLD, PRED), evaluate(GOLD, PRED)]
    table = mean_std(seeds)
    assert table["paper.labels.macro_f1"] == [0.6667, 0.0] and table["parse_ok"] == [0.75, 0.0]
