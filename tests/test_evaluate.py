"""Evaluation of a (tiny, random) SFT bundle: outputs, resume, quick mode, errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import word_tokenizer

from emoloom.core.errors import DataError, MissingInputError
from emoloom.core.io import read_jsonl
from emoloom.data.flip import load_antonyms
from emoloom.evaluation import runner as ev
from emoloom.evaluation.runner import EvalConfig
from emoloom.evaluation.scoring import evaluate_file, major_version_drift
from emoloom.training.config import LossWeights

CFG = EvalConfig(max_new_tokens=6, decode_mode="cached", batch_size=4, write_rows=8, max_len=512)


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return tiny_bundle


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_file_writes_outputs_and_all_metric_blocks(bundle, tiny_run, nrc, tmp_path):
    antonyms = load_antonyms(tiny_run / "antonyms.tsv", nrc)
    result = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path, CFG, train_path=tiny_run / "train.jsonl",
                           lexicon=nrc, antonyms=antonyms)
    m = result["metrics"]
    assert "decode" not in m and "speed" not in m and result["runtime"]["decode"]["rows"] > 0
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
    full = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "full", CFG)["metrics"]
    real, decoded = ev._decode, []

    def dying(model, tokenizer, prompts, cfg):
        if decoded:
            raise KeyboardInterrupt
        decoded.append(len(prompts))
        return real(model, tokenizer, prompts, cfg)

    monkeypatch.setattr(ev, "_decode", dying)
    with pytest.raises(KeyboardInterrupt):
        evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "killed", CFG)
    assert decoded == [CFG.write_rows] and len(lines(tmp_path / "killed/outputs.jsonl")) == 1 + CFG.write_rows

    def counting(model, tokenizer, prompts, cfg):
        decoded.append(len(prompts))
        return real(model, tokenizer, prompts, cfg)

    monkeypatch.setattr(ev, "_decode", counting)
    resumed = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "killed", CFG)
    assert sum(decoded[1:]) == full["n_evaluated"] - CFG.write_rows
    assert resumed["metrics"] == full                # the metrics file of a resumed run is the uninterrupted one's
    assert resumed["runtime"]["rows_decoded_this_run"] == full["n_evaluated"] - CFG.write_rows
    # another decoding config is another fingerprint: the file starts afresh
    other = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "killed", replace(CFG, max_new_tokens=3))
    assert other["metrics"]["n_evaluated"] == full["n_evaluated"]


def test_the_decoder_gets_write_rows_at_a_time_and_exact_outputs_do_not_depend_on_it(bundle, tiny_run, tmp_path,
                                                                                      monkeypatch):
    exact = replace(CFG, decode_mode="exact")
    per_batch = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "per_batch",
                              replace(exact, write_rows=exact.batch_size))["metrics"]
    real, sizes = ev._decode, []

    def counting(model, tokenizer, prompts, cfg):
        sizes.append(len(prompts))
        return real(model, tokenizer, prompts, cfg)

    monkeypatch.setattr(ev, "_decode", counting)
    grouped = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "grouped", exact)["metrics"]
    n = grouped["n_evaluated"]
    assert n > exact.write_rows and sizes[0] == exact.write_rows and sum(sizes) == n
    strip = [{k: v for k, v in row.items() if k != "_fingerprint"}
             for name in ("per_batch", "grouped") for row in lines(tmp_path / name / "outputs.jsonl")[1:]]
    assert strip[:n] == strip[n:]                     # the same rows, in the same order, with the same answers
    assert grouped["generated"] == per_batch["generated"]


def test_a_torn_last_line_is_cut_before_resuming(bundle, tiny_run, tmp_path):
    full = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "full", CFG)["metrics"]
    out = tmp_path / "torn/outputs.jsonl"
    out.parent.mkdir()
    kept = (tmp_path / "full/outputs.jsonl").read_text().splitlines(keepends=True)[:3]   # fingerprint + 2 rows
    out.write_text("".join(kept) + kept[-1][:25])                                         # + a torn third row
    resumed = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "torn", CFG)["metrics"]
    rows = lines(out)                                  # every line parses: the torn one was cut, not appended to
    ids = [r["id"] for r in rows[1:]]
    assert len(ids) == len(set(ids)) == full["n_evaluated"] and resumed == full


def test_quick_mode_stops_at_the_budget_in_seeded_order(bundle, tiny_run, tmp_path):
    quick = replace(CFG, time_budget_min=1e-6, stream_seed=7)
    m = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path, quick)["metrics"]
    assert m["n_evaluated"] == CFG.batch_size < m["n_records"]
    ids = [r["id"] for r in lines(tmp_path / "outputs.jsonl")[1:]]
    assert ids == [r["id"] for r in ev.ordered(list(read_jsonl(tiny_run / "dev.jsonl")), quick)][:CFG.batch_size]


def test_overflowing_inputs_count_as_invalid(bundle, tiny_run, tmp_path):
    m = evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path, replace(CFG, max_len=20))["metrics"]
    assert m["generated"]["parse_ok"] == 0.0 and m["generated"]["failures"] == {"input_overflow": m["n_evaluated"]}


def test_context_turns_keep_the_latest_turns_and_zero_shows_the_message_alone():
    record = {"text": "the cat sat", "context": "first turn here\nsecond turn here\nthird turn here"}
    tok = word_tokenizer(["the cat sat first second third turn here context message"], chat=True)
    words = lambda ids: tok.decode(ids)  # noqa: E731
    assert "first" in words(ev.fit_prompt(record, tok, 512, 8))
    latest = words(ev.fit_prompt(record, tok, 512, 8, max_turns=2))
    assert "first" not in latest and "second" in latest and "third" in latest
    alone = ev.fit_prompt(record, tok, 512, 8, max_turns=0)
    assert alone == ev.fit_prompt({"text": "the cat sat"}, tok, 512, 8) and "context" not in words(alone)


def test_an_evaluation_without_context_differs_only_where_rows_have_context(bundle, tiny_run, tmp_path):
    rows = list(read_jsonl(tiny_run / "dev.jsonl"))[:4]
    rows[0] = dict(rows[0], context="an earlier turn\nand another one")
    data = tmp_path / "dialogue.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    alone = tmp_path / "alone.jsonl"
    alone.write_text("".join(json.dumps(dict(r, context="")) + "\n" for r in rows))
    cfg = replace(CFG, decode_mode="heads")
    evaluate_file(bundle, data, tmp_path / "a", replace(cfg, context_turns=0))
    evaluate_file(bundle, data, tmp_path / "b", cfg)
    evaluate_file(bundle, alone, tmp_path / "c", cfg)
    dropped, shown, reference = ({d["id"]: d["heads"] for d in lines(tmp_path / run / "outputs.jsonl")[1:]}
                                 for run in "abc")
    assert dropped == reference and len(dropped) == 4
    assert [i for i in shown if shown[i] != dropped[i]] == [rows[0]["id"]]


def test_clear_errors(bundle, tiny_run, tmp_path):
    with pytest.raises(ValueError, match=r"eval.time_budget_min: must be > 0"):
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
    bad.write_text('{"id": "a", "text": "fine", "labels": []}\n{"id": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        evaluate_file(bundle, bad, tmp_path / "o", CFG)
    bad.write_text('{"id": "a", "text": "fine", "labels": ["joy"]}\n{"id": "b", "labels": ["joy"]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: record without text"):
        evaluate_file(bundle, bad, tmp_path / "o", CFG)
    bad.write_text('{"id": "a", "text": "fine", "labels": ["joy"]}\n{"id": "b", "text": "ok", "labels": ["happy"]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: unknown label\(s\) \['happy'\]"):
        evaluate_file(bundle, bad, tmp_path / "o", CFG)
    with pytest.raises(MissingInputError, match="training file .*missing.jsonl does not exist"):
        evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "o", CFG, train_path=tmp_path / "missing.jsonl",
                      lexicon=object())
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        evaluate_file(bundle, tiny_run / "dev.jsonl", tmp_path / "a_file", CFG)


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
    for flag, value in (("--time-budget-min", "0"), ("--max-rows", "0"), ("--batch-size", "-1")):
        with pytest.raises(SystemExit) as exit_:
            main(["evaluate", str(bundle), str(tiny_run / "dev.jsonl"), "--out", str(tmp_path), flag, value])
        assert exit_.value.code == 2 and f"argument {flag}: must be" in capsys.readouterr().err
    assert (tmp_path / "runtime.json").is_file() and "decode" not in metrics


def test_evaluate_cli_scores_ekman_7_on_request(bundle, tiny_run, small_raw_root, tmp_path, capsys):
    from emoloom.cli import main

    args = ["evaluate", str(bundle), str(tiny_run / "dev.jsonl"), "--mode", "cached", "--max-new-tokens", "4",
            "--max-rows", "4", "--batch-size", "2", "--raw-root", str(small_raw_root)]
    main([*args, "--out", str(tmp_path / "plain")])
    assert "ekman" not in json.loads((tmp_path / "plain/metrics.json").read_text())["generated"]
    main([*args, "--out", str(tmp_path / "ekman"), "--ekman"])
    ekman = json.loads((tmp_path / "ekman/metrics.json").read_text())["generated"]["ekman"]
    assert set(ekman["k_star"]) <= {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}
    assert ekman["k_star"] and ekman["strict"]["n"] == 4
    assert "Ekman-7 strict" in capsys.readouterr().out


def test_a_bundle_loads_from_any_working_directory(tiny_run, nrc, tmp_path, monkeypatch):
    """bundle.json names the backbone relative to the bundle, not to the directory the run started in."""
    from conftest import MIX, TINY_CFG, TINY_LORA

    from emoloom.modeling.model import load_bundle
    from emoloom.training.config import RunPaths
    from emoloom.training.loop import train

    monkeypatch.chdir(tiny_run)
    relative = RunPaths(train=Path("train.jsonl"), dev=Path("dev.jsonl"), backbone=Path("backbone"),
                        verifier=Path("verifier.pt"), antonyms=Path("antonyms.tsv"), out=Path("rel_run"),
                        plots=Path("rel_run/plots"))
    train(replace(TINY_CFG, max_steps=2, pass_steps=2), LossWeights(), TINY_LORA, relative, MIX, nrc, "rel")
    monkeypatch.chdir(tmp_path)
    model, _, info = load_bundle(tiny_run / "rel_run/model")
    assert not Path(info["backbone"]).is_absolute() and model.heads is not None
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run / "rel_run/model", moved)
    with pytest.raises(MissingInputError, match="its backbone .* is missing"):
        load_bundle(moved)


def test_decoded_and_heads_only_rows_are_written_in_chunks_of_their_own_sizes():
    todo = [({"id": i}, i < 5) for i in range(12)]
    chunks = [(len(c), d) for c, d in ev._batches(todo, 2, 4)]
    assert chunks == [(2, True), (2, True), (1, True), (4, False), (3, False)]
