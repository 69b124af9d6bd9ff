"""Evaluation of a model bundle on record JSONL: decode under the contract, parse, score both ways, heads mode.

Per-example outputs go to a JSONL file one batch at a time (first line: the run's fingerprint). A killed evaluation
re-run with the same fingerprint keeps the rows already written and decodes only the rest; a different fingerprint
(other weights, data or decoding config) starts the file afresh. With a time budget (quick mode) rows are taken in a
seeded order and the run stops when the budget is spent; live metrics and the ETA show on the progress bar.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from emoloom.core.contract import PROMPT_VERSION, ParseResult, context_turns, encode_prompt, parse_output
from emoloom.core.stamp import config_hash, environment_stamp, git_commit
from emoloom.data.mixing import unit_hash
from emoloom.evaluation.heads import heads_predict
from emoloom.evaluation.metrics import evaluate


@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = 64          # decoding budget per answer (paper: 64; quick eval 48)
    decode_mode: str = "exact"        # exact (protocol output, fast) | reference (KV-off loop) | cached (KV on)
    batch_size: int = 16              # rows decoded together
    max_len: int = 1536               # prompt + answer tokens; longer inputs lose their oldest context turns, and
                                      # count as invalid (failure "input_overflow") if the message alone is too long
    max_rows: int | None = None       # evaluate the first N rows only (None: all)
    time_budget_min: float | None = None   # quick mode: stop when spent
    stream_seed: int | None = None    # quick mode: seeded row order
    precision: str = "fp32"           # fp32 | bf16 (autocast)

    def __post_init__(self) -> None:
        if self.time_budget_min is not None and self.time_budget_min <= 0:
            raise ValueError(f"time budget must be > 0 minutes, got {self.time_budget_min}")
        if self.decode_mode not in ("exact", "reference", "cached", "heads"):
            raise ValueError(f"decode_mode must be exact, reference, cached or heads, got {self.decode_mode!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")

    @classmethod
    def from_params(cls, section: dict, **overrides) -> "EvalConfig":
        """From params.yaml `eval` (decoding keys), with stage-specific fields overridden."""
        keys = ("max_new_tokens", "decode_mode", "batch_size", "max_len", "precision")
        return cls(**{**{k: section[k] for k in keys}, **overrides})


def fit_prompt(record: dict, tokenizer, max_len: int, max_new_tokens: int) -> list[int] | None:
    """Prompt ids within max_len - max_new_tokens, dropping the oldest context turns first; None if impossible."""
    turns = context_turns(record)
    while True:
        ids = encode_prompt(tokenizer, record["text"], turns)
        if len(ids) + max_new_tokens <= max_len:
            return ids
        if not turns:
            return None
        turns = turns[1:]


def ordered(records: list[dict], cfg: EvalConfig) -> list[dict]:
    rows = sorted(records, key=lambda r: unit_hash(cfg.stream_seed, "stream", r["id"])) \
        if cfg.stream_seed is not None else list(records)
    return rows[:cfg.max_rows] if cfg.max_rows else rows


def _read_done(path: Path, fingerprint: dict) -> list[dict]:
    """Rows already written under the same fingerprint (a torn last line is dropped)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        if not lines or json.loads(lines[0]).get("_fingerprint") != fingerprint:
            return []
    except json.JSONDecodeError:
        return []
    done = []
    for line in lines[1:]:
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return done


def decode_rows(lm, tokenizer, prompts: list[list[int]], cfg: EvalConfig):
    """(generations, DecodeStats) under the protocol; exact mode's certification bound follows the precision."""
    from emoloom.evaluation.decoding import DEFAULT_BOUNDS, decode

    bound = DEFAULT_BOUNDS[torch.bfloat16] if cfg.precision == "bf16" and cfg.decode_mode == "exact" else None
    return decode(lm, tokenizer, prompts, cfg.max_new_tokens, mode=cfg.decode_mode, batch_size=cfg.batch_size,
                  bound=bound)


def _decode(model, tokenizer, prompts: list[list[int]], cfg: EvalConfig):
    return decode_rows(model.lm, tokenizer, prompts, cfg)


def run(model, tokenizer, records: list[dict], cfg: EvalConfig, out_path: Path, fingerprint: dict,
        desc: str = "eval") -> tuple[list[dict], dict]:
    """Decode (unless heads mode) and parse every row, appending per-example outputs to out_path; resumable.
    Returns the rows and the decoding statistics of this run (certified tokens, reference steps, mismatches...)."""
    rows = ordered(records, cfg)
    done = _read_done(out_path, fingerprint)
    done_ids = {d["id"] for d in done}
    todo = [r for r in rows if r["id"] not in done_ids]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not done:
        out_path.write_text(json.dumps({"_fingerprint": fingerprint}) + "\n", encoding="utf-8")
    gold = {r["id"]: r for r in rows}
    budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min else None
    start = time.perf_counter()
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.precision == "bf16" else None
    bar = tqdm(total=len(rows), initial=len(done), desc=desc, unit=" rows")
    decode_stats: dict = {}
    with open(out_path, "a", encoding="utf-8") as f:
        for i in range(0, len(todo), cfg.batch_size):
            chunk = todo[i:i + cfg.batch_size]
            prompts = [fit_prompt(r, tokenizer, cfg.max_len, cfg.max_new_tokens) for r in chunk]
            live = [j for j, p in enumerate(prompts) if p is not None]
            with amp if amp else nullcontext():
                heads = heads_predict(model, tokenizer, [prompts[j] for j in live], cfg.batch_size) if live else []
                gens = []
                if live and cfg.decode_mode != "heads":
                    gens, stats = _decode(model, tokenizer, [prompts[j] for j in live], cfg)
                    _accumulate(decode_stats, stats.as_dict())
            by_row = {j: (heads[k], gens[k] if gens else None) for k, j in enumerate(live)}
            for j, rec in enumerate(chunk):
                done.append(_example_row(rec, *by_row.get(j, (None, None)), cfg.decode_mode == "heads"))
                f.write(json.dumps(done[-1], ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(chunk))
            bar.set_postfix(_live_metrics(done, gold, budget_s, time.perf_counter() - start))
            if budget_s is not None and time.perf_counter() - start >= budget_s:
                break                  # quick mode: the budget is spent (checked after a batch: at least one runs)
    bar.close()
    return done, decode_stats


def _accumulate(total: dict, stats: dict) -> None:
    for key, value in stats.items():
        if key == "min_certified_margin":
            margins = [m for m in (total.get(key), value) if m is not None]
            total[key] = min(margins) if margins else None
        elif isinstance(value, (int, float)) and key != "bound":
            total[key] = round(total.get(key, 0) + value, 4)
        else:
            total[key] = value


def _example_row(rec: dict, heads: dict | None, gen, heads_only: bool) -> dict:
    if heads is None:
        return {"id": rec["id"], "raw": None, "valid": False, "failure": "input_overflow", "parsed": None,
                "stop": "overflow", "n_new_tokens": 0, "heads": None}
    if heads_only:
        return {"id": rec["id"], "raw": None, "valid": True, "failure": None, "parsed": heads, "stop": "heads",
                "n_new_tokens": 0, "heads": heads}
    result = parse_output(gen.text)
    parsed = {"labels": result.labels, "vad": result.vad, "rationale": result.rationale} if result.ok else None
    return {"id": rec["id"], "raw": gen.text, "valid": result.ok, "failure": result.failure, "parsed": parsed,
            "stop": gen.stop, "n_new_tokens": len(gen.token_ids), "heads": heads}


def _live_metrics(done: list[dict], gold: dict, budget_s: float | None, elapsed: float) -> dict:
    valid = [d for d in done if d["valid"]]
    scored = evaluate([gold[d["id"]] for d in done], [as_result(d["parsed"], d["valid"], d["failure"]) for d in done])
    post = {"parse_ok": f"{len(valid) / max(len(done), 1):.3f}",
            "f1": f"{scored['paper']['labels']['macro_f1'] or 0:.3f}"}
    if budget_s is not None:
        post["budget_left"] = f"{max(0.0, budget_s - elapsed) / 60:.1f}m"
    return post


def as_result(parsed: dict | None, valid: bool, failure: str | None) -> ParseResult:
    if not valid or parsed is None:
        return ParseResult(False, failure=failure)
    return ParseResult(True, parsed["labels"], parsed["vad"], parsed.get("rationale"))


def score(records: list[dict], rows: list[dict], ekman_mapping: dict | None = None) -> dict:
    """Metrics of the generated JSON and of the heads on the evaluated rows, and how often the two agree."""
    gold = {r["id"]: r for r in records}
    golds = [gold[d["id"]] for d in rows]
    generated = evaluate(golds, [as_result(d["parsed"], d["valid"], d["failure"]) for d in rows], ekman_mapping)
    with_heads = [d for d in rows if d["heads"] is not None]
    heads = evaluate(golds, [as_result(d["heads"], d["heads"] is not None, "input_overflow") for d in rows],
                     ekman_mapping)
    both = [d for d in with_heads if d["valid"]]
    agreement = {"n": len(both),
                 "labels_exact": round(sum(set(d["parsed"]["labels"]) == set(d["heads"]["labels"]) for d in both)
                                       / len(both), 4) if both else None,
                 "valence_mean_abs_diff": round(sum(abs(d["parsed"]["vad"]["v"] - d["heads"]["vad"]["v"])
                                                    for d in both) / len(both), 4) if both else None}
    stops = {}
    for d in rows:
        stops[d["stop"]] = stops.get(d["stop"], 0) + 1
    return {"generated": generated, "heads": heads, "agreement_heads_vs_generated": agreement, "stops": stops,
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
def flip_symmetry(model, tokenizer, records: list[dict], antonyms: dict[str, str], max_len: int) -> dict:
    """S_flip of the VAD head on the evaluated rows that have a Valence-Flip twin."""
    from emoloom.data.flip import flip_text
    from emoloom.evaluation.metrics import s_flip

    pairs = []
    for rec in records:
        flipped = flip_text(rec["text"], antonyms)
        prompts = [fit_prompt(r, tokenizer, max_len, 0) for r in (rec, dict(rec, text=flipped or ""))]
        if flipped and None not in prompts:
            v, v_flipped = (h["vad"]["v"] for h in heads_predict(model, tokenizer, prompts))
            pairs.append((v, v_flipped))
    return s_flip(pairs)


def evaluate_file(bundle_dir: Path, data_path: Path, out_dir: Path, cfg: EvalConfig, *, train_path: Path | None = None,
                  lexicon=None, antonyms: dict | None = None, ekman_mapping: dict | None = None,
                  desc: str = "eval") -> dict:
    """Evaluate a model bundle on a record JSONL: per-example outputs in out_dir/outputs.jsonl, and the metrics
    (generated JSON both ways, heads, agreement, baselines on the same rows, S_flip, provenance, speed)."""
    from emoloom.core.io import read_jsonl
    from emoloom.evaluation.baselines import baseline_report
    from emoloom.modeling.model import load_bundle

    records = list(read_jsonl(data_path))
    if not records:
        raise ValueError(f"{data_path}: no records to evaluate")
    model, tokenizer, info = load_bundle(bundle_dir)
    prov = provenance(cfg, info, data_path)
    for warning in prov["environment_warnings"]:
        print(f"warning: {warning}")
    start = time.perf_counter()
    rows, decode_stats = run(model, tokenizer, records, cfg, out_dir / "outputs.jsonl",
                             {"config_hash": prov["config_hash"]}, desc)
    seconds = time.perf_counter() - start
    by_id = {r["id"]: r for r in records}
    evaluated = [by_id[d["id"]] for d in rows]
    metrics = {"model": str(bundle_dir), "data": str(data_path), "n_records": len(records), "n_evaluated": len(rows),
               **score(evaluated, rows, ekman_mapping), "provenance": prov, "decode": decode_stats,
               "speed": {"seconds_this_run": round(seconds, 1),
                         "rows_per_s_this_run": round(decode_stats.get("rows", 0) / max(seconds, 1e-9), 3)}}
    if train_path is not None and lexicon is not None:
        metrics["baselines"] = baseline_report(list(read_jsonl(train_path)), evaluated, lexicon,
                                               ekman_mapping=ekman_mapping)
    if antonyms is not None:
        metrics["s_flip"] = flip_symmetry(model, tokenizer, evaluated, antonyms, cfg.max_len)
    return metrics
