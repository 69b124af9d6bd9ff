"""Scoring an evaluation (stages eval_dev, eval_dd_quick; `emoloom evaluate`): the generated JSON both ways, the
heads, their agreement, the baselines on the same rows, S_flip, and the provenance of it all. docs/evaluation.md."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from emoloom.core.contract import PROMPT_VERSION
from emoloom.core.errors import DataError, MissingInputError
from emoloom.core.stamp import config_hash, environment_stamp, git_commit
from emoloom.evaluation.heads import heads_predict
from emoloom.evaluation.metrics import evaluate
from emoloom.evaluation.runner import EvalConfig, as_result, fit_prompt, run


def score(records: list[dict], rows: list[dict], ekman_mapping: dict | None = None) -> dict:
    """Metrics of the generated JSON on the decoded rows, of the heads on every row that has them (all rows with
    heads_all_rows), and how often the two agree where both exist."""
    gold = {r["id"]: r for r in records}
    heads_rows, rows = rows, [d for d in rows if d["decoded"]]
    golds = [gold[d["id"]] for d in rows]
    generated = evaluate(golds, [as_result(d["parsed"], d["valid"], d["failure"]) for d in rows], ekman_mapping)
    heads = evaluate([gold[d["id"]] for d in heads_rows],
                     [as_result(d["heads"], d["heads"] is not None, "input_overflow") for d in heads_rows],
                     ekman_mapping)
    both = [d for d in rows if d["heads"] is not None and d["valid"]]
    agreement = {"n": len(both),
                 "labels_exact": round(sum(set(d["parsed"]["labels"]) == set(d["heads"]["labels"]) for d in both)
                                       / len(both), 4) if both else None,
                 "valence_mean_abs_diff": round(sum(abs(d["parsed"]["vad"]["v"] - d["heads"]["vad"]["v"])
                                                    for d in both) / len(both), 4) if both else None}
    stops = {}
    for d in rows:
        stops[d["stop"]] = stops.get(d["stop"], 0) + 1
    return {"n_decoded": len(rows), "n_heads": len(heads_rows), "generated": generated, "heads": heads,
            "agreement_heads_vs_generated": agreement, "stops": stops,
            "mean_new_tokens": round(sum(d["n_new_tokens"] for d in rows) / max(len(rows), 1), 2)}


def provenance(cfg: EvalConfig, bundle_info: dict, data_path: Path) -> dict:
    """Contract-first logging: commit, config hash, prompt version, decoding config, environments."""
    from emoloom.core.io import sha1_file

    env = environment_stamp()
    decoding = {**asdict(cfg), "greedy": True, "temperature": 0, "top_p": 1.0,
                "early_stop": "answer JSON closed or EOS", "use_cache": cfg.decode_mode == "cached"}
    return {"git_commit": git_commit(), "prompt_version": PROMPT_VERSION, "decoding": decoding,
            "config_hash": config_hash({"eval": asdict(cfg), "weights": bundle_info.get("weights_sha1"),
                                        "data": sha1_file(data_path)}),
            "model_weights_sha1": bundle_info.get("weights_sha1"), "model_run": bundle_info.get("run"),
            "environment": env, "environment_warnings": major_version_drift(bundle_info.get("environment"), env)}


def major_version_drift(trained: dict | None, running: dict) -> list[str]:
    """A warning per library whose major version differs between the checkpoint's stamp and this run."""
    warnings = []
    for lib, version in ((trained or {}).get("libraries") or {}).items():
        now = running["libraries"].get(lib)
        if version and now and version.split(".")[0] != now.split(".")[0]:
            warnings.append(f"{lib}: checkpoint made with {version}, evaluating with {now}")
    return warnings


@torch.no_grad()
def flip_symmetry(model, tokenizer, records: list[dict], antonyms: dict[str, str], max_len: int,
                  batch_size: int = 32) -> dict:
    """S_flip of the VAD head on the evaluated rows that have a Valence-Flip twin (one batched heads pass)."""
    from emoloom.data.flip import flip_text
    from emoloom.evaluation.metrics import s_flip

    originals, twins = [], []
    for rec in records:
        flipped = flip_text(rec["text"], antonyms)
        prompts = [fit_prompt(r, tokenizer, max_len, 0) for r in (rec, dict(rec, text=flipped or ""))]
        if flipped and None not in prompts:
            originals.append(prompts[0])
            twins.append(prompts[1])
    valences = [h["vad"]["v"] for h in heads_predict(model, tokenizer, originals + twins, batch_size)]
    return s_flip(list(zip(valences[:len(originals)], valences[len(originals):])))


def check_paths(bundle_dir: Path, data_path: Path, out_dir: Path, train_path: Path | None = None) -> None:
    """Every path an evaluation needs, checked before the model loads (MissingInputError / DataError name it)."""
    for what, path in (("model bundle", bundle_dir), ("data file", data_path), ("training file", train_path)):
        if path is not None and not Path(path).exists():
            raise MissingInputError(f"{what} {path} does not exist")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise DataError(f"output directory {out_dir} is a file: pass a directory for outputs.jsonl and metrics.json")


def evaluate_file(bundle_dir: Path, data_path: Path, out_dir: Path, cfg: EvalConfig, *, train_path: Path | None = None,
                  lexicon=None, antonyms: dict | None = None, ekman_mapping: dict | None = None,
                  desc: str = "eval") -> dict:
    """Evaluate a model bundle on a record JSONL: per-example outputs in out_dir/outputs.jsonl. Returns
    {"metrics": generated JSON both ways, heads, agreement, baselines on the same rows, S_flip, provenance;
     "runtime": this run's decoding statistics and speed (they differ after a resume, so they are kept apart)}."""
    from emoloom.data.records import read_records
    from emoloom.evaluation.baselines import baseline_report, fit_tfidf_labels
    from emoloom.modeling.model import load_bundle

    check_paths(bundle_dir, data_path, out_dir, train_path)
    records = read_records(data_path)
    if not records:
        raise DataError(f"{data_path}: no records to evaluate")
    train = read_records(train_path) if train_path is not None and lexicon is not None else None
    model, tokenizer, info = load_bundle(bundle_dir)
    prov = provenance(cfg, info, data_path)
    for warning in prov["environment_warnings"]:
        print(f"warning: {warning}")
    start = time.perf_counter()
    rows, decode_stats = run(model, tokenizer, records, cfg, Path(out_dir) / "outputs.jsonl",
                             {"config_hash": prov["config_hash"]}, desc)
    seconds = time.perf_counter() - start
    by_id = {r["id"]: r for r in records}
    evaluated = [by_id[d["id"]] for d in rows if d["decoded"]]
    metrics = {"model": str(bundle_dir), "data": str(data_path), "n_records": len(records), "n_evaluated": len(evaluated),
               **score(records, rows, ekman_mapping), "provenance": prov}
    if train is not None:
        tfidf = fit_tfidf_labels(train)
        metrics["baselines"] = baseline_report(train, evaluated, lexicon, ekman_mapping=ekman_mapping, tfidf=tfidf)
        if len(rows) > len(evaluated):               # the heads' rows: the baselines there too
            metrics["baselines_heads_rows"] = baseline_report(train, [by_id[d["id"]] for d in rows], lexicon,
                                                              ekman_mapping=ekman_mapping, tfidf=tfidf)
    if antonyms is not None:
        metrics["s_flip"] = flip_symmetry(model, tokenizer, evaluated, antonyms, cfg.max_len)
    runtime = {"decode": decode_stats, "seconds_this_run": round(seconds, 1),
               "rows_decoded_this_run": decode_stats.get("rows", 0),
               "rows_per_s_this_run": round(decode_stats.get("rows", 0) / max(seconds, 1e-9), 3)}
    return {"metrics": metrics, "runtime": runtime}
