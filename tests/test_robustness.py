"""Robust under slow machines, bad parameters and bad data (docs/robustness.md): every case fails fast with a message
naming its cause, or ends in a complete, honest result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_CFG, run_tiny

from emoloom.core.config import from_section, split_section
from emoloom.core.errors import DataError, ParamError
from emoloom.data.mixing import MixConfig, build_mixture
from emoloom.data.prepare import PrepareConfig, prepare_corpus
from emoloom.data.weak_vad import WeakVadConfig, WeakVadFilter
from emoloom.evaluation.runner import EvalConfig, QuickProbeConfig
from emoloom.modeling.model import LoraSettings
from emoloom.training.config import LossWeights, SFTConfig

# ------------------------------------------------------------------------------------------------ a slow machine


def test_a_budget_stop_still_ends_in_a_complete_run_and_a_rerun_finishes_it(tiny_run, nrc):
    """A budget spent before the first dev pass (a machine 10x slower): the run stops, scores its last weights,
    writes every declared output and names the selected weights; running it again resumes and finishes the same."""
    slow = replace(TINY_CFG, budget_min=1e-9)          # spent after the first step
    first = run_tiny(tiny_run, "budget", nrc, slow)
    metrics = first["metrics"]
    assert metrics["stop"] == "budget" and metrics["steps"] == 1 and metrics["selected_step"] == 1
    plots = tiny_run / "budget/plots"
    assert (plots / "dev_log.csv").read_text().splitlines()[1].startswith("1,")
    assert (plots / "train_log.csv").is_file() and (tiny_run / "budget/model/trainable.safetensors").is_file()
    events = [json.loads(line)["event"] for line in (plots / "decisions.jsonl").read_text().splitlines()]
    assert events[0] == "precision" and events[-1] == "final_evaluation" and events.index("stop") < len(events) - 1
    again = run_tiny(tiny_run, "budget", nrc, slow)    # dvc repro again: resumes the finished run
    assert again["metrics"] == metrics


# ------------------------------------------------------------------------------------------------ bad parameters

@pytest.mark.parametrize("cls, section, where, message", [
    (SFTConfig, {"max_steps": 0}, "sft.train", "sft.train.max_steps: must be >= 1, got 0"),
    (SFTConfig, {"precision": "fp8"}, "sft.train", "sft.train.precision: must be one of auto, fp32, bf16; got 'fp8'"),
    (SFTConfig, {"micro_batch": 0}, "sft.train", "sft.train.micro_batch: must be >= 1, got 0"),
    (SFTConfig, {"lr": "fast"}, "sft.train", "sft.train.lr: expected float, got 'fast'"),
    (SFTConfig, {"max_stepz": 5}, "sft.train", "sft.train: unknown key(s) max_stepz"),
    (LossWeights, {"lambda_vad": -1}, "loss", "loss.lambda_vad: must be >= 0, got -1"),
    (LoraSettings, {"r": 0}, "lora", "lora.r: must be >= 1, got 0"),
    (MixConfig, {"dev_frac": 0, "mixtures": {"a": [1, 1]}}, "mix", "mix.dev_frac: must be > 0, got 0"),
    (MixConfig, {"dev_frac": 1, "mixtures": {"a": [1, 1]}}, "mix", "mix.dev_frac: must be < 1, got 1"),
    (MixConfig, {"mixtures": {"a": [0, 0]}}, "mix", "mix.mixtures.a: expected [GoEmotions weight"),
    (PrepareConfig, {"min_tokens": 10, "max_tokens": 5}, "prepare", "prepare.max_tokens (5) must be >= "),
    (QuickProbeConfig, {"run": "20_80"}, "eval_dd_quick", "eval_dd_quick.run: expected `best` or <mixture>-s<seed>"),
])
def test_bad_parameters_are_refused_naming_the_key(cls, section, where, message):
    with pytest.raises(ParamError) as err:
        from_section(cls, section, where)
    assert message in str(err.value)


def test_a_heads_layer_past_the_backbones_depth_is_refused_before_the_data_loads(tiny_run, nrc, monkeypatch):
    def load_training_data(*args):
        raise AssertionError("the data was loaded before the heads layer was checked")

    monkeypatch.setattr("emoloom.training.loop.load_training_data", load_training_data)
    with pytest.raises(ParamError, match=r"^sft.train.heads_layer: this backbone has 2 decoder layers .*got 3$"):
        run_tiny(tiny_run, "deep_heads", nrc, replace(TINY_CFG, heads_layer=3))


def test_eval_and_weak_vad_sections_are_checked_key_by_key():
    with pytest.raises(ParamError, match=r"eval.precision: must be one of fp32, bf16; got 'fp8'"):
        EvalConfig.from_params({"precision": "fp8"})
    with pytest.raises(ParamError, match=r"eval.max_rows: must be >= 1, got 0"):
        EvalConfig.from_params({}, max_rows=0)
    with pytest.raises(ParamError, match=r"eval: unknown key\(s\) dev_max_rowz"):
        EvalConfig.from_params({"dev_max_rowz": 3})
    for tau in (-1, 1.5):
        with pytest.raises(ParamError, match=r"weak_vad.tau: must be"):
            split_section({"tau": tau}, "weak_vad", WeakVadFilter, WeakVadConfig)
    rule, cfg = split_section({"tau": 0.5, "epsilon": 0.02}, "weak_vad", WeakVadFilter, WeakVadConfig)
    assert rule.tau == 0.5 and cfg.epsilon == 0.02


def test_the_shipped_params_pass_every_check():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    from_section(SFTConfig, params["sft"]["train"], "sft.train")
    from_section(LossWeights, params["loss"], "loss")
    from_section(LoraSettings, params["lora"], "lora")
    from_section(MixConfig, params["mix"], "mix")
    from_section(PrepareConfig, params["prepare"], "prepare")
    split_section(params["weak_vad"], "weak_vad", WeakVadFilter, WeakVadConfig)
    EvalConfig.from_params(params["eval"], max_rows=params["eval"]["dev_max_rows"])
    from_section(QuickProbeConfig, params["eval_dd_quick"], "eval_dd_quick")


# ------------------------------------------------------------------------------------------------ degenerate data

def test_an_empty_corpus_file_stops_prepare_naming_it(small_raw_root, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(small_raw_root, root)
    (root / "goemotions/train.tsv").write_text("")
    with pytest.raises(DataError, match=r"goemotions/train.tsv: no row kept \(0 read"):
        prepare_corpus("goemotions", root, tmp_path / "out", PrepareConfig())
    assert not (tmp_path / "out/goemotions/train.jsonl").exists()


def test_an_empty_split_or_pool_is_refused():
    pool = [{"id": f"r{i}", "text": "x"} for i in range(50)]
    with pytest.raises(DataError, match="the train split is empty"):
        build_mixture([], pool, 20, 80, seed=1, dev_frac=0.05)          # GoEmotions kept no row
    with pytest.raises(DataError, match="the dev split is empty"):
        build_mixture(pool[:3], pool[3:6], 1, 1, seed=1, dev_frac=0.01)  # too few rows for any dev row


# ------------------------------------------------------------------------------------------------ stage boundary

def stage(work: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=work, env=env,
                          capture_output=True, text=True)


def test_a_stage_stops_on_a_bad_parameter_with_one_line_and_no_traceback(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["mix"]["dev_frac"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = stage(tmp_path, "mix.py", "20_80")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["mix: error: mix.dev_frac: must be > 0, got 0"]
    params["mix"]["dev_frac"] = 0.05
    params["sft"]["train"]["micro_batch"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = stage(tmp_path, "sft.py", "20_80", "11")           # refused before anything loads
    assert proc.returncode == 1 and proc.stderr.strip() == "sft: error: sft.train.micro_batch: must be >= 1, got 0"


def test_sft_help_prints_every_setting_with_its_help():
    proc = stage(REPO, "sft.py", "--help")
    assert proc.returncode == 0
    for line in ("| `max_steps` |", "| `lambda_vad` |", "| `last_layers` |", "optimizer steps T_max"):
        assert line in proc.stdout
