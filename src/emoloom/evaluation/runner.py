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

from emoloom.core.config import from_section, option, validate
from emoloom.core.contract import PROMPT_VERSION, ParseResult, context_turns, encode_prompt, parse_output
from emoloom.core.errors import DataError, MissingInputError, ParamError
from emoloom.core.io import atomic_path
from emoloom.core.stamp import config_hash, environment_stamp, git_commit
from emoloom.data.mixing import unit_hash
from emoloom.evaluation.heads import heads_predict
from emoloom.evaluation.metrics import evaluate

DECODE_MODES = ("exact", "reference", "cached", "heads")
EVAL_STAGE_KEYS = ("dev_max_rows",)     # params.yaml `eval` keys that a stage reads itself (eval_dev)


@dataclass(frozen=True)
class EvalConfig:
    """How an evaluation decodes and which rows it takes (params.yaml `eval`, plus each stage's own keys)."""
    max_new_tokens: int = option(64, "decoding budget per answer (paper: 64; quick eval 48)", ge=1)
    decode_mode: str = option("exact", "exact: protocol KV-off outputs at cached speed; reference: the KV-off loop; "
                                       "cached: KV on; heads: no decoding, the heads' answers", choices=DECODE_MODES)
    batch_size: int = option(16, "rows decoded together", ge=1)
    max_len: int = option(1536, "prompt + answer tokens; longer inputs lose their oldest context turns, and count as "
                                "invalid (input_overflow) if the message alone is too long", ge=2)
    max_rows: int | None = option(None, "evaluate the first N rows only (None: all)", ge=1)
    time_budget_min: float | None = option(None, "quick mode: stop when spent", gt=0)
    stream_seed: int | None = option(None, "quick mode: seeded row order")
    precision: str = option("fp32", "fp32 (the protocol's exact dtype on CPU) | bf16 (autocast)",
                            choices=("fp32", "bf16"))

    def __post_init__(self) -> None:
        validate(self, "eval")

    @classmethod
    def from_params(cls, section: dict, where: str = "eval", **overrides) -> "EvalConfig":
        """From params.yaml `eval` (its decoding keys), with stage-specific fields overridden; checked key by key."""
        keys = ("max_new_tokens", "decode_mode", "batch_size", "max_len", "precision")
        unknown = sorted(set(section) - set(keys) - set(EVAL_STAGE_KEYS))
        if unknown:
            raise ParamError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(keys + EVAL_STAGE_KEYS)}")
        return from_section(cls, {k: section[k] for k in keys if k in section}, where, **overrides)


@dataclass(frozen=True)
class QuickProbeConfig:
    """The time-budgeted DailyDialog probe (params.yaml `eval_dd_quick`)."""
    mixture: str = option("20_80", "which SFT run is probed: its mixture")
    seed: int = option(11, "... and its seed")
    time_budget_min: float = option(2.0, "stop after this many minutes (paper: 60)", gt=0)
    max_new_tokens: int = option(48, "decoding budget (the paper's quick eval: 48)", ge=1)
    stream_seed: int = option(42, "seeded row order")

    def __post_init__(self) -> None:
        validate(self, "eval_dd_quick")


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


def _read_done(path: Path, fingerprint: dict) -> tuple[list[dict], int]:
    """Rows already written under the same fingerprint, and the byte length of the file up to the last complete row
    (0: start afresh). A torn last line (no newline, or not JSON) ends the rows; `run` cuts the file there."""
    if not path.exists():
        return [], 0
    done, good = [], 0
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            try:
                obj = json.loads(line) if line.endswith(b"\n") else None
            except json.JSONDecodeError:
                obj = None
            if i == 0 and (not isinstance(obj, dict) or obj.get("_fingerprint") != fingerprint):
                return [], 0
            if obj is None:
                break
            if i:
                done.append(obj)
            good += len(line)
    return done, good


def _open_for_append(path: Path, fingerprint: dict, good_bytes: int):
    """The outputs file opened for appending after its last complete row (a fresh file holds only the fingerprint)."""
    if good_bytes == 0:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"_fingerprint": fingerprint}) + "\n", encoding="utf-8")
    else:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return open(path, "a", encoding="utf-8")


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
    done, good_bytes = _read_done(out_path, fingerprint)
    done_ids = {d["id"] for d in done}
    todo = [r for r in rows if r["id"] not in done_ids]
    gold = {r["id"]: r for r in rows}
    budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min else None
    start = time.perf_counter()
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.precision == "bf16" else None
    bar = tqdm(total=len(rows), initial=len(done), desc=desc, unit=" rows")
    decode_stats: dict = {}
    with _open_for_append(out_path, fingerprint, good_bytes) as f:
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
    from emoloom.evaluation.baselines import baseline_report
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
    evaluated = [by_id[d["id"]] for d in rows]
    metrics = {"model": str(bundle_dir), "data": str(data_path), "n_records": len(records), "n_evaluated": len(rows),
               **score(evaluated, rows, ekman_mapping), "provenance": prov}
    if train is not None:
        metrics["baselines"] = baseline_report(train, evaluated, lexicon, ekman_mapping=ekman_mapping)
    if antonyms is not None:
        metrics["s_flip"] = flip_symmetry(model, tokenizer, evaluated, antonyms, cfg.max_len)
    runtime = {"decode": decode_stats, "seconds_this_run": round(seconds, 1),
               "rows_decoded_this_run": decode_stats.get("rows", 0),
               "rows_per_s_this_run": round(decode_stats.get("rows", 0) / max(seconds, 1e-9), 3)}
    return {"metrics": metrics, "runtime": runtime}
