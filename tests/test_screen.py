"""Screening on a tiny random backbone (wiring) and the ranking maths."""

from __future__ import annotations

import pytest

from emoloom.core.io import read_jsonl
from emoloom.evaluation.runner import EvalConfig
from emoloom.evaluation.screening import ProbeConfig, probe, rank, table_markdown, zero_shot
from emoloom.modeling.backbones import load_backbone
from emoloom.reporting.figures import screening_radar

CFG = EvalConfig(max_new_tokens=4, decode_mode="cached", batch_size=4, max_len=512, time_budget_min=1e-6,
                 stream_seed=1)


def test_zero_shot_and_probe_rows_have_the_table_1_columns(tiny_run, tmp_path):
    lm, tokenizer = load_backbone(tiny_run / "backbone")
    train, dev = list(read_jsonl(tiny_run / "train.jsonl")), list(read_jsonl(tiny_run / "dev.jsonl"))
    zs = zero_shot(lm, tokenizer, dev, CFG)
    assert zs["n"] == CFG.batch_size            # the budget stops after the first batch
    assert {"macro_f1", "rmse", "rho_mean", "quality", "q_json_ok", "q_struct_ok", "q_ratlen_ok"} <= set(zs)
    pr = probe(lm, tokenizer, train, dev, CFG, ProbeConfig(train_rows=20, epochs=5))
    assert pr["n"] == len(dev) and 0 <= pr["macro_f1"] <= 1
    ranked = rank({"a": zs, "b": {**zs, "macro_f1": zs["macro_f1"] + 0.1}})
    assert ranked["b"]["z_f1"] == 1.0 and ranked["a"]["z_f1"] == -1.0
    assert ranked["b"]["composite"] > ranked["a"]["composite"]
    assert table_markdown("t", ranked).splitlines()[4].startswith("| b |")
    out = screening_radar({"Zero-shot": ranked, "Probe": rank({"a": pr})}, tmp_path / "radar.png")
    assert out.stat().st_size > 10_000


def test_the_probe_learns_its_training_rows(tiny_run):
    """Fitted on the dev rows themselves, the heads must beat their own untrained priors there."""
    lm, tokenizer = load_backbone(tiny_run / "backbone")
    dev = list(read_jsonl(tiny_run / "dev.jsonl"))
    fitted = probe(lm, tokenizer, dev, dev, CFG, ProbeConfig(train_rows=len(dev), epochs=300, lr=0.1))
    priors = probe(lm, tokenizer, dev, dev, CFG, ProbeConfig(train_rows=len(dev), epochs=0))
    assert fitted["macro_f1"] > priors["macro_f1"] + 0.2, (fitted["macro_f1"], priors["macro_f1"])
    assert fitted["rmse"] < priors["rmse"]


def test_single_candidate_has_zero_z_scores():
    row = {"macro_f1": 0.1, "rmse": 0.2, "rho_mean": 0.3, "quality": 0.4}
    assert rank({"only": row})["only"]["composite"] == pytest.approx(0.0)
