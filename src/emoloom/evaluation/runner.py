"""Evaluation of a model bundle on record JSONL: decode under the contract, parse, score both ways, heads mode.

Per-example outputs go to a JSONL file every `write_rows` rows (first line: the run's fingerprint). A killed evaluation
re-run with the same fingerprint keeps the rows already written and decodes only the rest; a different fingerprint
(other weights, data or decoding config) starts the file afresh. With a time budget (quick mode) rows are taken in a
seeded order and the run stops when the budget is spent; live metrics and the ETA show on the progress bar.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from emoloom.core.config import from_section, option, validate
from emoloom.core.contract import ParseResult, context_turns, encode_prompt, parse_output
from emoloom.core.errors import ParamError
from emoloom.core.io import atomic_path
from emoloom.data.mixing import unit_hash
from emoloom.evaluation.heads import heads_predict
from emoloom.evaluation.metrics import evaluate

DECODE_MODES = ("exact", "reference", "cached", "heads")
EVAL_STAGE_KEYS = ("dev_max_rows",)     # params.yaml `eval` keys that a stage reads itself (eval_dev)
HEADS_ROWS = 1024   # heads-only rows per append: ~3 s per 100 rows, and more rows sorted by length pad less (1.75x)


@dataclass(frozen=True)
class EvalConfig:
    """How an evaluation decodes and which rows it takes (params.yaml `eval`, plus each stage's own keys)."""
    max_new_tokens: int = option(64, "decoding budget per answer (paper: 64; quick eval 48)", ge=1)
    decode_mode: str = option("exact", "exact: protocol KV-off outputs at cached speed; reference: the KV-off loop; "
                                       "cached: KV on; heads: no decoding, the heads' answers", choices=DECODE_MODES)
    batch_size: int = option(16, "rows decoded together", ge=1)
    write_rows: int = option(128, "rows between two appends to the outputs file (what a killed run redoes); the "
                                  "decoder sorts them by prompt length into batches of batch_size, so more rows pad "
                                  "less. Quick mode appends every batch_size rows and checks its budget in between",
                             ge=1)
    max_len: int = option(1536, "prompt + answer tokens; longer inputs lose their oldest context turns, and count as "
                                "invalid (input_overflow) if the message alone is too long", ge=2)
    max_rows: int | None = option(None, "decode the first N rows only (None: all)", ge=1)
    context_turns: int | None = option(None, "dialogue turns shown before the message, the latest ones (None: all the "
                                             "record holds; 0: the message alone, as the training rows are)", ge=0)
    heads_all_rows: bool = option(False, "score the heads on every row, also past max_rows (heads are cheap)")
    time_budget_min: float | None = option(None, "quick mode: stop when spent", gt=0)
    stream_seed: int | None = option(None, "quick mode: seeded row order")
    precision: str = option("fp32", "fp32 (the protocol's exact dtype on CPU) | bf16 (autocast)",
                            choices=("fp32", "bf16"))

    def __post_init__(self) -> None:
        validate(self, "eval")

    @classmethod
    def from_params(cls, section: dict, where: str = "eval", **overrides) -> "EvalConfig":
        """From params.yaml `eval` (its decoding keys), with stage-specific fields overridden; checked key by key."""
        keys = ("max_new_tokens", "decode_mode", "batch_size", "write_rows", "max_len", "precision", "heads_all_rows")
        unknown = sorted(set(section) - set(keys) - set(EVAL_STAGE_KEYS))
        if unknown:
            raise ParamError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(keys + EVAL_STAGE_KEYS)}")
        return from_section(cls, {k: section[k] for k in keys if k in section}, where, **overrides)


@dataclass(frozen=True)
class QuickProbeConfig:
    """The time-budgeted DailyDialog probe (params.yaml `eval_dd_quick`)."""
    run: str = option("best", "which SFT run is probed: `best`, the one metrics/best.json names (the dev composite's "
                              "choice, as the paper probes its best mixture), or a run such as 20_80-s11")
    time_budget_min: float = option(2.0, "stop after this many minutes (paper: 60)", gt=0)
    max_new_tokens: int = option(48, "decoding budget (the paper's quick eval: 48)", ge=1)
    stream_seed: int = option(42, "seeded row order")
    context_turns: int = option(0, "dialogue turns shown before each utterance (0: the utterance alone, as the paper "
                                   "probes and as every training row reads; docs/evaluation.md)", ge=0)

    def __post_init__(self) -> None:
        validate(self, "eval_dd_quick")
        if self.run != "best" and not re.fullmatch(r"\w+-s\d+", self.run):
            raise ParamError("eval_dd_quick.run: expected `best` or <mixture>-s<seed> such as 20_80-s11, "
                             f"got {self.run!r}")


def fit_prompt(record: dict, tokenizer, max_len: int, max_new_tokens: int,
               examples: Sequence[tuple[str, str]] = (), max_turns: int | None = None) -> list[int] | None:
    """Prompt ids within max_len - max_new_tokens, dropping the oldest context turns first; None if impossible.
    `examples`: screening's few-shot arm (contract.build_messages); `max_turns`: the latest context turns shown at
    most (None: all the record holds)."""
    turns = context_turns(record)
    if max_turns is not None:
        turns = turns[len(turns) - max_turns:] if max_turns else []
    while True:
        ids = encode_prompt(tokenizer, record["text"], turns, examples)
        if len(ids) + max_new_tokens <= max_len:
            return ids
        if not turns:
            return None
        turns = turns[1:]


def ordered(records: list[dict], cfg: EvalConfig) -> list[dict]:
    """The rows to decode: seeded order in quick mode, the first max_rows."""
    rows = sorted(records, key=lambda r: unit_hash(cfg.stream_seed, "stream", r["id"])) \
        if cfg.stream_seed is not None else list(records)
    return rows[:cfg.max_rows] if cfg.max_rows else rows


def plan(records: list[dict], cfg: EvalConfig) -> list[tuple[dict, bool]]:
    """Every row the run visits, with whether it is decoded (the rest get only the heads: heads_all_rows)."""
    decode = ordered(records, cfg)
    chosen = {r["id"] for r in decode}
    extra = [r for r in records if r["id"] not in chosen] if cfg.heads_all_rows else []
    return [(r, True) for r in decode] + [(r, False) for r in extra]


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
    """Decode (unless heads mode) and parse the planned rows, heads on each, appending per-example outputs to
    out_path; resumable. Returns the rows and the decoding statistics of this run (certified tokens, reference steps,
    mismatches...)."""
    rows = plan(records, cfg)
    done, good_bytes = _read_done(out_path, fingerprint)
    done_ids = {d["id"] for d in done}
    todo = [(r, decode) for r, decode in rows if r["id"] not in done_ids]
    gold = {r["id"]: r for r, _ in rows}
    budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min else None
    start = time.perf_counter()
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.precision == "bf16" else None
    bar = tqdm(total=len(rows), initial=len(done), desc=desc, unit=" rows")
    decode_stats: dict = {}
    size = cfg.batch_size if budget_s is not None else max(cfg.write_rows, cfg.batch_size)
    with _open_for_append(out_path, fingerprint, good_bytes) as f:
        for chunk, decode in _batches(todo, size, max(size, HEADS_ROWS)):
            prompts = [fit_prompt(r, tokenizer, cfg.max_len, cfg.max_new_tokens, max_turns=cfg.context_turns)
                       for r in chunk]
            live = [j for j, p in enumerate(prompts) if p is not None]
            with amp if amp else nullcontext():
                heads = heads_predict(model, tokenizer, [prompts[j] for j in live], cfg.batch_size) if live else []
                gens = []
                if live and decode and cfg.decode_mode != "heads":
                    gens, stats = _decode(model, tokenizer, [prompts[j] for j in live], cfg)
                    _accumulate(decode_stats, stats.as_dict())
            by_row = {j: (heads[k], gens[k] if gens else None) for k, j in enumerate(live)}
            for j, rec in enumerate(chunk):
                done.append(_example_row(rec, *by_row.get(j, (None, None)), cfg.decode_mode, decode))
                f.write(json.dumps(done[-1], ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(chunk))
            bar.set_postfix(_live_metrics(done, gold, budget_s, time.perf_counter() - start))
            if budget_s is not None and time.perf_counter() - start >= budget_s:
                break                  # quick mode: the budget is spent (checked after a batch: at least one runs)
    bar.close()
    return done, decode_stats


def _batches(todo: list[tuple[dict, bool]], size: int, heads_size: int):
    """(records, decoded?) batches of consecutive rows that are all decoded (at most `size`) or all heads-only (at
    most `heads_size`)."""
    i = 0
    while i < len(todo):
        flag = todo[i][1]
        limit = size if flag else heads_size
        j = i
        while j < len(todo) and j - i < limit and todo[j][1] == flag:
            j += 1
        yield [r for r, _ in todo[i:j]], flag
        i = j


def _accumulate(total: dict, stats: dict) -> None:
    for key, value in stats.items():
        if key == "min_certified_margin":
            margins = [m for m in (total.get(key), value) if m is not None]
            total[key] = min(margins) if margins else None
        elif isinstance(value, (int, float)) and key != "bound":
            total[key] = round(total.get(key, 0) + value, 4)
        else:
            total[key] = value


def _example_row(rec: dict, heads: dict | None, gen, mode: str, decoded: bool) -> dict:
    """One line of outputs.jsonl. Not decoded (heads only, past max_rows): valid is None and only the heads count."""
    row = {"id": rec["id"], "decoded": decoded, "raw": None, "valid": None if not decoded else False, "failure": None,
           "parsed": None, "stop": "not_decoded" if not decoded else "overflow", "n_new_tokens": 0, "heads": heads}
    if heads is None:
        return {**row, "failure": "input_overflow" if decoded else None}
    if not decoded:
        return row
    if mode == "heads":
        return {**row, "valid": True, "parsed": heads, "stop": "heads"}
    result = parse_output(gen.text)
    parsed = {"labels": result.labels, "vad": result.vad, "rationale": result.rationale} if result.ok else None
    return {**row, "raw": gen.text, "valid": result.ok, "failure": result.failure, "parsed": parsed,
            "stop": gen.stop, "n_new_tokens": len(gen.token_ids)}


def _live_metrics(done: list[dict], gold: dict, budget_s: float | None, elapsed: float) -> dict:
    done = [d for d in done if d["decoded"]] or done[:1]
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
