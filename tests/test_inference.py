"""Using a model: the input formats and their per-row errors, `EmotionModel.predict` against the evaluation path,
`emoloom predict` output files (atomic, nothing lost on a crash), `best` and the plain-transformers export."""

import csv
import io
import json
import sys

import pytest
import torch

from emoloom.cli import main
from emoloom.core.contract import PROMPT_VERSION, build_prompt
from emoloom.core.errors import DataError, MissingInputError
from emoloom.core.io import read_jsonl, write_json
from emoloom.core.labels import LABELS
from emoloom.evaluation.runner import EvalConfig, decode_rows
from emoloom.evaluation.scoring import evaluate_file
from emoloom.inference.inputs import read_inputs, rows_from_texts
from emoloom.inference.predictor import EmotionModel, resolve_model
from emoloom.reporting.best import best_run


def statuses(rows):
    return [(r.id, r.text, r.error) for r in rows]


def test_plain_text_rows_keep_their_line_and_flag_empty_and_undecodable(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"\xef\xbb\xbfthanks so much\n\n   \nbad \xff byte\nI am so angry\n")
    assert statuses(read_inputs(str(path))) == [
        ("1", "thanks so much", None), ("2", "", "empty_text"), ("3", "   ", "empty_text"),
        ("4", None, "undecodable"), ("5", "I am so angry", None)]


def test_csv_rows_read_text_id_and_context_columns(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text,context\na1,"hello, you",\na2,,\na3,"fine","how are you?\\nbad day"\nshort\n')
    rows = list(read_inputs(str(path)))
    assert statuses(rows) == [("a1", "hello, you", None), ("a2", "", "empty_text"), ("a3", "fine", None),
                              ("short", None, "missing_text")]
    assert rows[2].context == ["how are you?\\nbad day"]
    (tmp_path / "no_text.csv").write_text("sentence,label\nhi,joy\n")
    with pytest.raises(DataError, match=r"no_text.csv:1: a CSV input needs a `text` column"):
        list(read_inputs(str(tmp_path / "no_text.csv")))


def test_jsonl_rows_flag_bad_json_and_missing_text(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "r1", "text": "so happy", "context": ["hi", "what happened?"]}\n{"text": \n'
                    '{"id": "r3"}\n[1, 2]\n\n{"text": "ok", "context": "a\\nb"}\n')
    rows = list(read_inputs(str(path)))
    assert statuses(rows) == [("r1", "so happy", None), ("2", None, "bad_json"), ("r3", None, "missing_text"),
                              ("4", None, "bad_json"), ("6", "ok", None)]
    assert rows[0].context == ["hi", "what happened?"] and rows[4].context == ["a", "b"]


def test_stdin_is_read_as_plain_text(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"one\ntwo\n")))
    assert [r.text for r in read_inputs("-")] == ["one", "two"]


# ---------------------------------------------------------------- the model

@pytest.fixture(scope="module")
def model(tiny_bundle):
    return EmotionModel.load(tiny_bundle)


def test_predict_gives_the_evaluations_answers_and_heads(model, tiny_bundle, tiny_run, tmp_path):
    """predict() decodes exactly what `emoloom evaluate` decodes for the same rows (same prompt, decoder, budget)."""
    dev = list(read_jsonl(tiny_run / "dev.jsonl"))[:4]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    cfg = EvalConfig(max_new_tokens=model.max_new_tokens, decode_mode="exact", batch_size=4, max_len=512)
    evaluate_file(tiny_bundle, tmp_path / "dev.jsonl", tmp_path / "eval", cfg)
    evaluated = [r for r in read_jsonl(tmp_path / "eval/outputs.jsonl") if "id" in r]
    rows = [r for batch in model.predict_rows(
        [row for rec in dev for row in rows_from_texts([rec["text"]], rec["context"].split("\n"))],
        mode="both", batch_size=4, max_len=512) for r in batch]
    assert [p.raw for p in rows] == [e["raw"] for e in evaluated]
    assert [p.status == "ok" for p in rows] == [e["valid"] for e in evaluated]
    assert [p.heads["labels"] for p in rows] == [e["heads"]["labels"] for e in evaluated]
    assert all(set(p.heads["probs"]) == set(LABELS) and set(p.heads["vad"]) == {"v", "a", "d"} for p in rows)


def test_bad_rows_get_a_status_and_the_rest_are_predicted(model):
    out = model.predict(["you", "", "word " * 600, "thanks"], max_len=256, mode="heads")
    assert [p.status for p in out] == ["ok", "empty_text", "too_long", "ok"]
    assert out[1].heads is None and out[2].heads is None and out[0].heads is not None
    assert all(p.raw is None for p in out)                       # heads mode decodes nothing


def test_cli_writes_csv_and_jsonl_one_row_per_input(tiny_bundle, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("thanks so much\n\nI am so angry\n")
    main(["predict", str(tiny_bundle), "--input", str(src), "--output", str(tmp_path / "out.csv"), "--mode", "both",
          "--max-new-tokens", "6"])
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["status"] == "empty_text") for r in rows] == [("1", False), ("2", True), ("3", False)]
    assert rows[0]["heads_labels"] and not (tmp_path / "out.csv.partial").exists()
    main(["predict", str(tiny_bundle), "you", "thanks", "--context", "hello", "--output", str(tmp_path / "o.jsonl"),
          "--max-new-tokens", "6"])
    lines = list(read_jsonl(tmp_path / "o.jsonl"))
    assert [r["text"] for r in lines] == ["you", "thanks"] and all(r["heads"] is None for r in lines)


def test_a_crash_keeps_the_finished_rows_and_never_writes_a_torn_output(tiny_bundle, tmp_path, monkeypatch):
    real = EmotionModel.predict_rows

    def crash_after_first_batch(self, rows, **kw):
        batches = real(self, rows, **kw)
        yield next(batches)
        raise KeyboardInterrupt

    monkeypatch.setattr(EmotionModel, "predict_rows", crash_after_first_batch)
    src = tmp_path / "in.txt"
    src.write_text("".join(f"text number {i}\n" for i in range(5)))
    with pytest.raises(KeyboardInterrupt):
        main(["predict", str(tiny_bundle), "--input", str(src), "--output", str(tmp_path / "out.jsonl"),
              "--batch-size", "2", "--mode", "heads"])
    assert not (tmp_path / "out.jsonl").exists()
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl.partial")] == ["1", "2"]


# ---------------------------------------------------------------- the best run

def eval_metrics(run: str, f1: float, rmse: float, rho: float, parse_ok: float) -> dict:
    return {"run": run, "model": f"data/sft/{run}/model", "generated": {"parse_ok": parse_ok, "strict": {
        "labels": {"macro_f1": f1}, "vad": {"rmse": rmse, "rho_mean": rho}}}}


def test_best_run_is_the_composites_winner_and_predict_best_finds_it(tmp_path, monkeypatch):
    runs = {"20_80": {11: eval_metrics("20_80-s11", 0.20, 0.10, 0.3, 0.97)},
            "50_50": {11: eval_metrics("50_50-s11", 0.25, 0.09, 0.4, 0.99)},
            "80_20": {11: eval_metrics("80_20-s11", 0.22, 0.11, 0.2, 0.95)}}
    best = best_run(runs)
    assert best["run"] == "50_50-s11" and best["bundle"] == "data/sft/50_50-s11/model"
    assert max(best["runs"].values(), key=lambda r: r["composite"]) == best["runs"]["50_50-s11"]
    write_json(tmp_path / "metrics/best.json", best)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert resolve_model("best") == tmp_path / "data/sft/50_50-s11/model"
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(MissingInputError, match="metrics/best.json"):
        resolve_model("best")


# ---------------------------------------------------------------- export

def test_export_loads_with_plain_transformers_and_answers_token_for_token(model, tiny_bundle, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    main(["export", str(tiny_bundle), str(tmp_path / "hf")])
    out = tmp_path / "hf"
    spec = json.loads((out / "emoloom_prompt.json").read_text())
    tok, lm = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out).eval()
    texts = ["thanks so much", "i am so angry", "you did this"]
    prompts = [model.tokenizer(build_prompt(t, None, model.tokenizer), add_special_tokens=False).input_ids
               for t in texts]
    cfg = EvalConfig(max_new_tokens=spec["max_new_tokens"], decode_mode="exact")
    ours, _ = decode_rows(model.model.lm, model.tokenizer, prompts, cfg)
    assert [p.raw for p in model.predict(texts)] == [g.text for g in ours]
    for text, g in zip(texts, ours):
        messages = [{"role": "system", "content": spec["system_prompt"]},
                    {"role": "user", "content": spec["message_prefix"] + text}]
        ids = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            theirs = lm.generate(ids, max_new_tokens=spec["max_new_tokens"], do_sample=False)[0, ids.shape[1]:]
        assert theirs.tolist()[:len(g.token_ids)] == g.token_ids     # token for token, up to our JSON stop
        if g.stop == "eos":
            assert theirs[len(g.token_ids)] == tok.eos_token_id
    heads = load_file(str(out / "emoloom_heads.safetensors"))
    assert torch.equal(heads["labels.weight"], model.model.heads.labels.weight.detach())
    card = (out / "README.md").read_text()
    for needed in ("CC BY-NC 4.0", "NRC", PROMPT_VERSION, "admiration", "Reproduce", "Intended use"):
        assert needed in card


# ---------------------------------------------------------------- any labelled file

def test_a_users_labelled_csv_converts_and_scores_without_code(tiny_bundle, tmp_path):
    src = tmp_path / "mine.csv"
    src.write_text("text,labels,v,a,d\n"
                   "thanks so much for the help today,gratitude,0.9,0.4,0.6\n"
                   "i am so angry about this whole thing,anger;annoyance,0.1,0.9,0.6\n"
                   "what a lovely and kind thing to do,admiration|love,0.85,0.5,0.5\n"
                   "the meeting moved to three today,neutral,,,\n")
    main(["convert", str(src), str(tmp_path / "mine.jsonl"), "--no-weak-vad"])
    records = list(read_jsonl(tmp_path / "mine.jsonl"))
    assert [r["labels"] for r in records] == [["gratitude"], ["anger", "annoyance"], ["admiration", "love"],
                                              ["neutral"]]
    assert records[1]["vad"] == {"v": 0.1, "a": 0.9, "d": 0.6} and records[3]["vad"] is None
    main(["evaluate", str(tiny_bundle), str(tmp_path / "mine.jsonl"), "--out", str(tmp_path / "ev"),
          "--max-new-tokens", "6", "--mode", "heads"])
    metrics = json.loads((tmp_path / "ev/metrics.json").read_text())
    vad = metrics["generated"]["strict"]["vad"]
    assert metrics["n_records"] == 4 and vad["n"] == 3 and {"r_v", "r_a", "r_d"} <= set(vad)


def test_a_labelled_csv_outside_the_label_space_stops_at_its_line(tmp_path):
    src = tmp_path / "mine.csv"
    src.write_text("text,labels\nthanks so much for the help,gratitude\nwe won the cup again today,happiness\n")
    with pytest.raises(SystemExit, match=r"mine.csv:3: unknown label\(s\) \['happiness'\]"):
        main(["convert", str(src), str(tmp_path / "mine.jsonl"), "--no-weak-vad"])
