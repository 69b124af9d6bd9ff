"""Evaluation of a (tiny, random) SFT bundle: outputs, resume, quick mode, errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import run_tiny

from emoloom.core.io import read_jsonl
from emoloom.data.flip import load_antonyms
from emoloom.evaluation import runner as ev
from emoloom.evaluation.runner import EvalConfig, evaluate_file, major_version_drift

CFG = EvalConfig(max_new_tokens=6, decode_mode="cached", batch_size=4, max_len=512)


@pytest.fixture(scope="module")
def bundle(tiny_run, nrc):
    run_tiny(tiny_run, "for_eval", nrc)
    return tiny_run / "for_eval/model"


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_file_writes_outputs_and_all_metric_blocks(bundle, tiny_run, nrc, tmp_path):
    antonyms = load_antonyms(tiny_run / "antonyms.tsv", nrc)
    m = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path, CFG, train_path=tiny_run / "train.jsonl",
                      lexicon=nrc, antonyms=antonyms)
    out = lines(tmp_path / "outputs.jsonl")
    n = len(list(read_jsonl(tiny_run / "dev.jsonl")))
    assert "_fingerprint" in out[0] and len(out) == n + 1 and m["n_evaluated"] == n
    assert {"id", "raw", "valid", "failure", "parsed", "stop", "heads"} <= set(out[1])
    assert m["generated"]["n"] == n and 0 <= m["generated"]["parse_ok"] <= 1
    assert {"paper", "strict"} <= set(m["generated"]) and m["heads"]["parse_ok"] == 1.0
    assert {"tfidf_lr", "constant_mean"} <= set(json.dumps(m["baselines"]).replace('"', " ").split())
    assert m["provenance"]["prompt_version"] and m["provenance"]["model_weights_sha1"]
    assert "s_flip" in m["s_flip"]


def test_a_killed_eval_resumes_without_redecoding(bundle, tiny_run, tmp_path, monkeypatch):
    full = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "full", CFG)
    real, decoded = ev._decode, []

    def dying(model, tokenizer, prompts, cfg):
        if decoded:
            raise KeyboardInterrupt
        decoded.append(len(prompts))
        return real(model, tokenizer, prompts, cfg)

    monkeypatch.setattr(ev, "_decode", dying)
    with pytest.raises(KeyboardInterrupt):
        evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "killed", CFG)
    assert len(lines(tmp_path / "killed/outputs.jsonl")) == 1 + CFG.batch_size

    def counting(model, tokenizer, prompts, cfg):
        decoded.append(len(prompts))
        return real(model, tokenizer, prompts, cfg)

    monkeypatch.setattr(ev, "_decode", counting)
    resumed = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "killed", CFG)
    assert sum(decoded[1:]) == full["n_evaluated"] - CFG.batch_size
    assert resumed["generated"] == full["generated"]
    # another decoding config is another fingerprint: the file starts afresh
    other = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "killed", replace(CFG, max_new_tokens=3))
    assert other["n_evaluated"] == full["n_evaluated"]


def test_quick_mode_stops_at_the_budget_in_seeded_order(bundle, tiny_run, tmp_path):
    quick = replace(CFG, time_budget_min=1e-6, stream_seed=7)
    m = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path, quick)
    assert m["n_evaluated"] == CFG.batch_size < m["n_records"]
    ids = [r["id"] for r in lines(tmp_path / "outputs.jsonl")[1:]]
    assert ids == [r["id"] for r in ev.ordered(list(read_jsonl(tiny_run / "dev.jsonl")), quick)][:CFG.batch_size]


def test_overflowing_inputs_count_as_invalid(bundle, tiny_run, tmp_path):
    m = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path, replace(CFG, max_len=20))
    assert m["generated"]["parse_ok"] == 0.0 and m["generated"]["failures"] == {"input_overflow": m["n_evaluated"]}


def test_clear_errors(bundle, tiny_run, tmp_path):
    with pytest.raises(ValueError, match="time budget must be > 0"):
        EvalConfig(time_budget_min=0)
    with pytest.raises(FileNotFoundError, match="not an EmoLoom model bundle"):
        evaluate_file(tmp_path, tiny_run / "dev.jsonl", tmp_path / "o", CFG)
    other = tmp_path / "other_space"
    other.mkdir()
    info = json.loads((bundle / "bundle.json").read_text())
    (other / "bundle.json").write_text(json.dumps({**info, "labels": ["happy", "sad"]}))
    with pytest.raises(ValueError, match="another label space"):
        evaluate_file(other, tiny_run / "dev.jsonl", tmp_path / "o", CFG)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n{"id": \n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        evaluate_file(bundle, bad, tmp_path / "o", CFG)


def test_major_version_drift_warns():
    running = {"libraries": {"torch": "2.13.0", "transformers": "5.24.0"}}
    assert major_version_drift({"libraries": {"torch": "2.9.1", "transformers": "4.45.1"}}, running) == [
        "transformers: checkpoint made with 4.45.1, evaluating with 5.24.0"]
    assert major_version_drift(None, running) == []


def test_evaluate_cli(bundle, tiny_run, tmp_path, capsys):
    from emoloom.cli import main

    main(["evaluate", str(bundle), str(tiny_run / "dev.jsonl"), "--out", str(tmp_path), "--mode", "cached",
          "--max-new-tokens", "4", "--time-budget-min", "0.0001", "--batch-size", "2"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_evaluated"] == 2 and "ParseOK" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="time budget must be > 0"):
        main(["evaluate", str(bundle), str(tiny_run / "dev.jsonl"), "--out", str(tmp_path), "--time-budget-min", "0"])
