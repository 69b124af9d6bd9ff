"""SFT wiring on a tiny random-init Llama (fast), and a few real steps on SmolLM2 (slow)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from conftest import MIX, REPO, TINY_CFG, TINY_LORA, paths_for, records_from, run_tiny

from emoloom.core.io import read_jsonl, write_jsonl
from emoloom.modeling.model import LoraSettings
from emoloom.modeling.token_lexicon import lexical_tokens
from emoloom.modeling.verifier import AppraisalVerifier, tokenizer_sha1
from emoloom.training import loop as train_mod
from emoloom.training import setup as train_setup
from emoloom.training.config import LOSS_TERMS, LossWeights
from emoloom.training.loop import train


def without_run(result: dict) -> dict:
    return {k: v for k, v in result["metrics"].items() if k != "run"}


def test_same_seed_gives_identical_weights_and_metrics(tiny_run, nrc):
    a, b = run_tiny(tiny_run, "det_a", nrc), run_tiny(tiny_run, "det_b", nrc)
    assert without_run(a) == without_run(b) and a["metrics"]["steps"] == 6
    c = run_tiny(tiny_run, "det_c", nrc, replace(TINY_CFG, seed=12))
    assert c["metrics"]["weights_sha1"] != a["metrics"]["weights_sha1"]
    bundle = json.loads((tiny_run / "det_a/model/bundle.json").read_text())
    assert bundle["weights_sha1"] == a["metrics"]["weights_sha1"] and bundle["prompt_version"]
    assert {"git_commit", "environment", "tokenizer_sha1", "config", "loss"} <= set(bundle)
    log = (tiny_run / "det_a/plots/train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert len(log) == 7 and {"loss_vad", "loss_app", "loss_flip", "lr", "grad_norm", "temperature", "entropy",
                              "n_goemotions"} <= set(header)


def test_the_heads_refit_reads_the_exported_weights_features(tiny_run, nrc):
    """The refit re-extracts its features with the weights it exports, at the heads' layer: the bundle's heads are
    standardised on the trained model's layer-1 features of the refit sample, not the frozen backbone's."""
    from emoloom.modeling.model import load_bundle
    from emoloom.training.heads_fit import refit_sample
    from emoloom.training.setup import example_features, load_training_data

    cfg = replace(TINY_CFG, heads_refit_rows=24, lr=1e-2, heads_layer=1)
    run_tiny(tiny_run, "refit", nrc, cfg)
    model, tokenizer, _ = load_bundle(tiny_run / "refit/model")
    assert model.heads.layer == 1
    data = load_training_data(cfg, paths_for(tiny_run, "refit"), tokenizer, nrc, MIX, "refit", torch.device("cpu"))
    sample = refit_sample(data.examples, MIX, cfg.heads_refit_rows, cfg.seed)
    trained, labels, _ = example_features(model, sample, cfg, tokenizer.pad_token_id)
    with model.lm.disable_adapter():
        frozen, _, _ = example_features(model, sample, cfg, tokenizer.pad_token_id)
    mean = model.heads.feature_mean
    assert torch.allclose(mean, trained.mean(0), atol=1e-5)
    assert (mean - frozen.mean(0)).abs().max() > 100 * (mean - trained.mean(0)).abs().max()
    decision = [json.loads(line) for line in (tiny_run / "refit/plots/decisions.jsonl").read_text().splitlines()
                if '"heads_refit"' in line]
    assert len(decision) == 1 and decision[0]["rows"] == len(sample) == 24 and labels.shape == (24, 28)


def test_the_refit_reuses_the_features_training_computed_below_the_adapters(tiny_run, nrc):
    """LoRA on the last of 2 layers, the heads on the first: training cannot change what the heads read, so the loop
    keeps each trained example's features (they equal what the exported weights compute for it) and the refit puts
    those examples first in its sample, computing features only for the rest."""
    from emoloom.modeling.model import load_bundle
    from emoloom.training.setup import example_features, load_training_data

    cfg = replace(TINY_CFG, heads_refit_rows=24, heads_layer=1)
    train(cfg, LossWeights(), replace(TINY_LORA, last_layers=1), paths_for(tiny_run, "reuse"), MIX, nrc, "reuse")
    kept = torch.load(tiny_run / "reuse/checkpoint.pt", weights_only=False)["state"].features
    model, tokenizer, _ = load_bundle(tiny_run / "reuse/model")
    data = load_training_data(cfg, paths_for(tiny_run, "reuse"), tokenizer, nrc, MIX, "reuse", torch.device("cpu"))
    by_id = {ex.id: ex for exs in data.examples.values() for ex in exs}
    assert 0 < len(kept) <= cfg.max_steps * cfg.micro_batch * cfg.grad_accum
    now, _, _ = example_features(model, [by_id[i] for i in kept], cfg, tokenizer.pad_token_id)
    assert torch.allclose(torch.stack(list(kept.values())), now, atol=1e-5)
    decision = [json.loads(line) for line in (tiny_run / "reuse/plots/decisions.jsonl").read_text().splitlines()
                if '"heads_refit"' in line][0]
    share = cfg.heads_refit_rows // len(MIX)
    assert decision["rows"] == 24 and decision["reused"] == sum(
        min(share, sum(by_id[i].source == s for i in kept)) for s in MIX) > 0
    without = [json.loads(line) for line in (tiny_run / "refit/plots/decisions.jsonl").read_text().splitlines()
               if '"heads_refit"' in line] if (tiny_run / "refit").exists() else []
    assert all(d["reused"] == 0 for d in without)        # LoRA on every layer (the test above): nothing to reuse


KILL_AT_CALL = 9     # step_losses calls: 2 per step, so the kill lands inside step 5, after the step-4 checkpoint
CHILD = """
import os, signal, sys, json
sys.path.insert(0, {tests!r})
from pathlib import Path
from emoloom.training import loop as t
import conftest as h
from emoloom.data.lexicon import load_lexicon
calls = {{"n": 0}}
real = t.step_losses
def killing(*a, **k):
    calls["n"] += 1
    if calls["n"] == {kill}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
t.step_losses = killing
h.run_tiny(Path({tmp!r}), "killed", load_lexicon("nrc_vad", Path({root!r})))
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tiny_run, nrc, raw_root):
    child = CHILD.format(tests=str(REPO / "tests"), kill=KILL_AT_CALL, tmp=str(tiny_run), root=str(raw_root))
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    saved = torch.load(tiny_run / "killed/checkpoint.pt", weights_only=False)
    assert saved["state"].step == 4
    resumed = run_tiny(tiny_run, "killed", nrc)
    uninterrupted = run_tiny(tiny_run, "uninterrupted", nrc)
    assert without_run(resumed) == without_run(uninterrupted)
    events = [d["event"] for d in json.loads("[" + ",".join(
        (tiny_run / "killed/plots/decisions.jsonl").read_text().splitlines()) + "]")]
    assert "resumed" in events


def test_oom_heals_by_shorter_max_len_and_more_accumulation(tiny_run, nrc, monkeypatch):
    real, calls = train_mod.step_losses, {"n": 0}

    def oom_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "step_losses", oom_once)
    result = run_tiny(tiny_run, "oom", nrc)
    decisions = [json.loads(line) for line in (tiny_run / "oom/plots/decisions.jsonl").read_text().splitlines()]
    heal = next(d for d in decisions if d["event"] == "oom_self_heal")
    assert (heal["step"], heal["max_len"], heal["grad_accum"], heal["micro_batch"]) == (1, 384, 4, 1)
    assert result["metrics"]["steps"] == 6 and result["metrics"]["oom_heals"] == 1
    calls["n"] = 0          # the next run's third micro-batch fails again, but healing would go below the floor
    with pytest.raises(RuntimeError, match="min_max_len=250"):
        run_tiny(tiny_run, "oom_floor", nrc, replace(TINY_CFG, max_len=300, min_max_len=250))


def test_gradients_flow_from_every_loss_term(tiny_run, nrc):
    import random

    from transformers import AutoTokenizer

    from emoloom.data.flip import load_antonyms
    from emoloom.modeling.token_lexicon import lexical_tokens
    from emoloom.training.sft_data import collate

    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "backbone")
    model = train_setup.build_model(tiny_run / "backbone", TINY_CFG, TINY_LORA, torch.device("cpu"))
    verifier = AppraisalVerifier.load(tiny_run / "verifier.pt", tokenizer).requires_grad_(False)
    rows = list(read_jsonl(tiny_run / "train.jsonl"))
    antonyms = load_antonyms(tiny_run / "antonyms.tsv", nrc)
    examples = train_setup.build_examples(rows, tokenizer, replace(TINY_CFG, flip_prob=1.0), antonyms, random.Random(0))
    batch = collate([e for e in examples if e.flipped_prompt_ids][:2] + examples[:2], tokenizer.pad_token_id)
    assert batch.flip_rows.numel() >= 2 and batch.input_ids.size(0) == 4 + batch.flip_rows.numel()
    ids, lexical_vad = lexical_tokens(tokenizer, nrc)
    table, lexical = torch.tensor(ids), lexical_vad
    lora = [p for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n]
    heads = list(model.heads.parameters())
    for term in LOSS_TERMS:
        model.zero_grad(set_to_none=True)
        terms, _ = train_mod.step_losses(model, batch, verifier, table, lexical)
        assert torch.isfinite(terms[term]) and terms[term].item() > 0, term
        terms[term].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora), f"no LoRA gradient from {term}"
        if term in ("cls", "reg", "flip"):
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in heads), f"no head gradient from {term}"


def test_a_lambda_reaches_the_loss_and_a_zero_weight_term_is_not_computed(tiny_run, nrc):
    off = run_tiny(tiny_run, "vad_off", nrc, weights=LossWeights(lambda_vad=0.0))
    on = run_tiny(tiny_run, "vad_on", nrc, weights=LossWeights(lambda_vad=1.0))
    assert off["metrics"]["weights_sha1"] != on["metrics"]["weights_sha1"]
    assert "vad" not in off["metrics"]["final_train_loss"] and "vad" in on["metrics"]["final_train_loss"]
    header = (tiny_run / "vad_off/plots/train_log.csv").read_text().splitlines()[0].split(",")
    assert "loss_vad" not in header and "loss_lm" in header


def test_bad_params_fail_before_compute(tiny_run, nrc):
    with pytest.raises(ValueError, match=r"loss.lambda_vad: must be >= 0"):
        LossWeights(lambda_vad=-1.0)
    with pytest.raises(ValueError, match="below the prompt"):
        run_tiny(tiny_run, "short", nrc, replace(TINY_CFG, max_len=8))
    with pytest.raises(FileNotFoundError, match="verifier input"):
        train(TINY_CFG, LossWeights(), TINY_LORA, replace(paths_for(tiny_run, "x"), verifier=tiny_run / "nope.pt"),
              MIX, nrc, "x")
    with pytest.raises(ValueError, match="mixture sources"):
        train(TINY_CFG, LossWeights(), TINY_LORA, paths_for(tiny_run, "y"), {"goemotions": 1, "dailydialog": 1},
              nrc, "y")


@pytest.mark.slow
def test_a_few_real_sft_steps_on_smollm2_lower_the_loss(smollm2_dir, small_raw_root, nrc, tmp_path):
    from transformers import AutoTokenizer

    train_rows, _ = records_from(small_raw_root, tmp_path, nrc)
    rows = train_rows[:4]                       # a tiny pool, seen again and again: the LM loss must drop
    for rec in rows:
        rec["source"] = "goemotions"
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "dev.jsonl", rows[:2])
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    ids, _ = lexical_tokens(tokenizer, nrc)
    AppraisalVerifier(ids, tokenizer_sha1(tokenizer)).save(tmp_path / "verifier.pt")
    (tmp_path / "antonyms.tsv").write_text((small_raw_root / "antonyms/wordnet30_antonym_pairs.tsv").read_text())
    paths = replace(paths_for(tmp_path, "real"), backbone=smollm2_dir)
    cfg = replace(TINY_CFG, max_steps=8, micro_batch=2, grad_accum=1, pass_steps=8, eval_rows=2, max_new_tokens=4,
                  precision="auto", lr=2e-3, head_lr=1e-2, max_train_examples=4, ema_decay=0.0)
    result = train(cfg, LossWeights(), LoraSettings(r=8, alpha=16, last_layers=2), paths, {"goemotions": 1.0}, nrc,
                   "real")
    log = (tmp_path / "real/plots/train_log.csv").read_text().splitlines()
    col = log[0].split(",").index("loss_lm")
    lm = [float(line.split(",")[col]) for line in log[1:]]
    assert len(lm) == 8 and all(math.isfinite(x) for x in lm)
    assert sum(lm[-2:]) / 2 < 0.9 * sum(lm[:2]) / 2, lm
    assert (tmp_path / "real/model/trainable.safetensors").stat().st_size > 0 and result["metrics"]["steps"] == 8
