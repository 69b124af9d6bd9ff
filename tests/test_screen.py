"""Screening: the two ways on a tiny random backbone (wiring), the bootstrap's intervals, rank-1 frequencies and
ties on real dev rows, the probe's row budget, and the candidates fingerprint that makes `screen` re-run."""

from __future__ import annotations

import importlib

import pytest
import yaml
from conftest import REPO

from emoloom.core.contract import ParseResult
from emoloom.core.io import read_jsonl
from emoloom.evaluation.runner import EvalConfig
from emoloom.evaluation.screening import ProbeConfig, Scored, probe, probe_rows, rank, table_markdown, zero_shot
from emoloom.evaluation.uncertainty import BootstrapConfig
from emoloom.modeling import backbones
from emoloom.reporting.figures import screening_radar

CFG = EvalConfig(max_new_tokens=4, decode_mode="cached", batch_size=4, max_len=512, time_budget_min=1e-6,
                 stream_seed=1)
BOOT = BootstrapConfig(samples=200, seed=3)


def test_zero_shot_and_probe_rows_have_the_table_1_columns(tiny_run, tmp_path):
    lm, tokenizer = backbones.load_backbone(tiny_run / "backbone")
    train, dev = list(read_jsonl(tiny_run / "train.jsonl")), list(read_jsonl(tiny_run / "dev.jsonl"))
    zs = zero_shot(lm, tokenizer, dev, CFG)
    assert len(zs.rows) == CFG.batch_size and zs.prompt_format == "chat template"  # the budget stops after a batch
    assert {"macro_f1", "rmse", "rho_mean", "quality", "q_json_ok", "q_struct_ok", "q_ratlen_ok"} <= set(zs.summary())
    pr = probe(lm, tokenizer, train, dev, CFG, ProbeConfig(train_rows=20, epochs=5))
    assert len(pr.rows) == len(dev) and 0 <= pr.summary()["macro_f1"] <= 1
    ranked = rank({"a": zs, "b": zs}, BOOT)
    assert ranked["a"]["composite"] == ranked["b"]["composite"] == 0.0
    assert ranked["a"]["tied"] and ranked["b"]["tied"] and ranked["a"]["rank1"] == ranked["b"]["rank1"] == 0.5
    table = table_markdown("t", ranked)
    assert "Tied (composite intervals overlap): a, b." in table and "[" in table.splitlines()[4]
    alone = rank({"a": pr}, BOOT)
    assert alone["a"]["composite"] == 0.0 and alone["a"]["rank1"] == 1.0 and not alone["a"]["tied"]
    out = screening_radar({"Zero-shot": ranked, "Probe": alone}, tmp_path / "radar.png")
    assert out.stat().st_size > 10_000


def test_the_probe_learns_its_training_rows(tiny_run):
    """Fitted on the dev rows themselves, the heads must beat their own untrained priors there."""
    lm, tokenizer = backbones.load_backbone(tiny_run / "backbone")
    dev = list(read_jsonl(tiny_run / "dev.jsonl"))
    fitted = probe(lm, tokenizer, dev, dev, CFG, ProbeConfig(train_rows=len(dev), epochs=300, lr=0.1)).summary()
    priors = probe(lm, tokenizer, dev, dev, CFG, ProbeConfig(train_rows=len(dev), epochs=0)).summary()
    assert fitted["macro_f1"] > priors["macro_f1"] + 0.2, (fitted["macro_f1"], priors["macro_f1"])
    assert fitted["rmse"] < priors["rmse"]


def test_the_probe_budget_shrinks_its_rows(tiny_run):
    lm, tokenizer = backbones.load_backbone(tiny_run / "backbone")
    train, dev = list(read_jsonl(tiny_run / "train.jsonl")), list(read_jsonl(tiny_run / "dev.jsonl"))
    full = probe_rows(lm, tokenizer, train, dev, CFG, ProbeConfig(train_rows=30))
    tight = probe_rows(lm, tokenizer, train, dev, CFG, ProbeConfig(train_rows=30, budget_min=1e-5))
    assert (len(full[0]), len(full[1])) == (30, len(dev))
    assert len(tight[0]) < 30 and len(tight[1]) < len(dev) and tight[1] == dev[:len(tight[1])]


# ---------------------------------------------------------------- intervals and ties on real dev rows

def answers(rows, quality: float) -> list[ParseResult]:
    """Gold labels and VAD for the first `quality` share of rows, 'neutral' at the neutral VAD point for the rest."""
    keep = int(len(rows) * quality)
    return [ParseResult(True, r["labels"], r["vad"], "cue") if i < keep else
            ParseResult(True, ["neutral"], {"v": 0.5, "a": 0.5, "d": 0.5}, "cue") for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def dev_rows(small_raw_root, nrc, tmp_path_factory):
    from conftest import records_from
    train, dev = records_from(small_raw_root, tmp_path_factory.mktemp("screen_rows"), nrc)
    return (train + dev)[:80]


def scored(rows, results):
    return Scored(rows, results, True, 0.0, "chat template")


def test_identical_candidates_are_tied_and_split_the_first_rank(dev_rows):
    same = answers(dev_rows, 0.5)
    ranked = rank({"a": scored(dev_rows, same), "b": scored(dev_rows, list(same))}, BOOT)
    assert ranked["a"]["tied"] and ranked["b"]["tied"]
    assert ranked["a"]["rank1"] == ranked["b"]["rank1"] == 0.5
    assert ranked["a"]["ci"]["macro_f1"] == ranked["b"]["ci"]["macro_f1"]


def test_a_clearly_better_candidate_ranks_first_and_a_tiny_gap_is_a_tie(dev_rows):
    good, bad = answers(dev_rows, 0.9), answers(dev_rows, 0.1)
    ranked = rank({"good": scored(dev_rows, good), "bad": scored(dev_rows, bad)}, BOOT)
    assert ranked["good"]["rank1"] >= 0.95 and not ranked["good"]["tied"] and not ranked["bad"]["tied"]
    lo, hi = ranked["good"]["ci"]["macro_f1"]
    assert lo <= ranked["good"]["macro_f1"] <= hi and hi < 1.0 + 1e-9
    near = answers(dev_rows, 0.5)
    nearer = near[:-1] + [ParseResult(True, dev_rows[-1]["labels"], dev_rows[-1]["vad"], "cue")]  # one row better
    close = rank({"x": scored(dev_rows, near), "y": scored(dev_rows, nearer)}, BOOT)
    assert close["x"]["tied"] and close["y"]["tied"] and 0.05 < close["y"]["rank1"] < 0.95
    assert close["x"]["rows_to_separate_0.02"] is not None


def test_candidates_are_scored_on_the_rows_they_all_have(dev_rows):
    ranked = rank({"long": scored(dev_rows, answers(dev_rows, 0.5)),
                   "short": scored(dev_rows[:40], answers(dev_rows[:40], 0.5))}, BOOT)
    assert ranked["long"]["n"] == ranked["short"]["n"] == 40 and ranked["long"]["n_scored"] == 80


# ---------------------------------------------------------------- screen re-runs when the candidates change

def test_installing_a_candidate_changes_its_fingerprint(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fake_emoloom_weights"
    package.mkdir(parents=True)
    monkeypatch.setitem(backbones.REGISTRY, "fake-1m", backbones._Packaged(
        install=("fake-emoloom-weights==1.0",), parts=("fake_emoloom_weights/w.gguf",), license="test"))
    before = backbones.candidate_fingerprint("fake-1m")
    assert before["status"] == "not installed" and "fake-emoloom-weights==1.0" in before["install"]
    (package / "__init__.py").write_text("")
    (package / "w.gguf").write_bytes(b"\0" * 100)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    installed = backbones.candidate_fingerprint("fake-1m")
    assert installed["status"] == "installed" and installed["parts"][0]["size"] == 100
    (package / "w.gguf").write_bytes(b"\0" * 120)
    assert backbones.candidate_fingerprint("fake-1m") != installed
    assert backbones.candidate_fingerprint("no/such-model")["status"] == "not cached"


def test_screen_depends_on_the_candidates_fingerprint_which_always_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["screen_candidates"]["always_changed"] is True
    assert "metrics/screen_candidates.json" in stages["screen"]["deps"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages["screen_candidates"]["outs"]]
    assert outs == ["metrics/screen_candidates.json"]


# ---------------------------------------------------------------- the few-shot fallback arm

def test_few_shot_examples_are_seeded_gold_answers_in_the_prompt(tiny_run):
    from emoloom.core.contract import PLAIN_ANSWER_CUE, build_messages, build_prompt, parse_output
    from emoloom.evaluation.screening import few_shot_examples

    train = list(read_jsonl(tiny_run / "train.jsonl"))
    shots = few_shot_examples(train, 2, seed=5)
    assert shots == few_shot_examples(train, 2, seed=5) and shots != few_shot_examples(train, 2, seed=6)
    assert all(parse_output(answer).ok for _, answer in shots)
    roles = [m["role"] for m in build_messages("hello", None, shots)]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    plain = build_prompt("hello", None, None, shots)
    assert plain.count(PLAIN_ANSWER_CUE) == 3 and plain.endswith(f"Message: hello\n{PLAIN_ANSWER_CUE}")
    assert build_prompt("hello", None, None, ()) == build_prompt("hello", None, None)   # zero-shot prompt unchanged
    lm, tokenizer = backbones.load_backbone(tiny_run / "backbone")
    few = zero_shot(lm, tokenizer, list(read_jsonl(tiny_run / "dev.jsonl")), CFG, shots)
    assert few.prompt_format == "chat template, 2-shot" and len(few.rows) == CFG.batch_size
