"""Greedy decoding under the contract: temperature 0, early stop once the answer's JSON object closes or at EOS,
a fixed new-token budget. KV-off (`use_cache=False`, full recompute per step, one sample at a time) is the protocol.

`decode(..., mode=...)` runs one of three decoders over a list of prompts:

- "reference": the protocol loop itself. Each step is one batch-1, unpadded, no-cache forward over prompt + the
  tokens so far, and the next token is the argmax of its last-position logits. Quadratic; the ground truth.
- "exact": the certified fast path. Prompts are bucketed by length and decoded greedily *with* the KV cache in
  batches (left padding, the shared system-prompt prefix computed once, finished rows dropped), and each step's
  logits certify the token they chose: it must win by a top-1 minus top-2 logit margin above `bound`, an upper bound
  on how far a margin of the cached step can be from the same margin in the reference step (measured,
  docs/decoding.md). A token that fails is settled by the reference step itself; if the reference disagrees with the
  candidate, the row is re-decoded (cached) from the corrected prefix and certified again. Every returned token is
  therefore either certified or computed by the reference step, and `DecodeStats` counts each kind.
- "cached": plain batched KV-cached decoding without certification (fast, not protocol-exact).

The heads mode (no decoding) is emoloom.evaluation.heads; the measurement behind the certification bounds is
emoloom.evaluation.calibration.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

from emoloom.core.contract import json_end
from emoloom.modeling.batching import common_prefix, left_pad, length_buckets, position_ids, prefix_forward

MODES = ("reference", "exact", "cached")

# Certification bounds (logit units) on how far any logit margin of a cached decoding step can be from the same
# margin in the reference step, by dtype: 10.7x (fp32: 1e-3 vs 9.35e-5) and 2.9x (bf16: 4.0 vs 1.38) the largest shift
# measured on SmolLM2-135M-Instruct (the backbone, and a fine-tuned bundle) over 672 positions of real dev rows on
# CPU, 1 and 2 threads (docs/decoding.md; `calibration.measure_logit_gap` / `benchmarks/bench_decoding.py --calibrate`
# repeat it for another backbone or machine).
DEFAULT_BOUNDS = {torch.float32: 1e-3, torch.bfloat16: 4.0}


@dataclass
class Generation:
    token_ids: list[int]
    text: str
    stop: str                        # "json" (answer closed), "eos", or "budget"


@dataclass
class DecodeStats:
    mode: str
    rows: int = 0
    steps: int = 0                   # decoding steps over all rows (returned tokens + the EOS steps)
    bound: float | None = None       # the certification margin bound ("exact")
    certified_tokens: int = 0        # steps whose candidate token passed the margin certificate
    reference_steps: int = 0         # steps settled by running the reference step itself
    mismatches: int = 0              # reference steps whose token differed from the cached candidate
    certified_rows: int = 0          # rows whose every step was certified (no reference step at all)
    rounds: int = 0                  # cached-decode + certify rounds ("exact"; > 1 after a mismatch)
    min_certified_margin: float | None = None
    forwards: int = 0                # model forward calls
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ shared pieces

def stop_reason(tokenizer, new: list[int], token: int) -> str | None:
    """Apply one decoded token to `new` (the answer so far) under the contract's stop rule; the stop reason or None."""
    if token == tokenizer.eos_token_id:
        return "eos"
    new.append(token)
    if "}" in tokenizer.decode([token]) and json_end(tokenizer.decode(new)) is not None:
        return "json"
    return None


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def reference_logits(lm, ids: list[int]) -> torch.Tensor:
    """Last-position logits of the protocol's step: batch 1, no padding, no cache, full recompute."""
    x = torch.tensor([ids], dtype=torch.long, device=lm.device)
    mask = torch.ones_like(x)
    out = lm(input_ids=x, attention_mask=mask, position_ids=position_ids(mask), cache=None, use_cache=False,
             logits_to_keep=1)
    return out.logits[:, -1]


def _reference_step(lm, ids: list[int]) -> int:
    return int(reference_logits(lm, ids).argmax(-1))


# ------------------------------------------------------------------------------------------------ decoders

@torch.no_grad()
def _reference_row(lm, tokenizer, prompt: list[int], max_new_tokens: int, stats: DecodeStats) -> Generation:
    new: list[int] = []
    stop = None
    for _ in range(max_new_tokens):
        token = _reference_step(lm, prompt + new)
        stats.forwards += 1
        stats.steps += 1
        stats.reference_steps += 1
        stop = stop_reason(tokenizer, new, token)
        if stop:
            break
    return Generation(new, tokenizer.decode(new), stop or "budget")


class Candidate(NamedTuple):
    steps: list[int]                 # the tokens of the cached steps, EOS included when it is the stop
    stop: str | None                 # the stop reason, or None when the row's budget ran out
    top1: list[int]                  # per step: the argmax of the step's logits (the token chosen, unless altered)
    margins: list[float]             # per step: its logits' top-1 minus top-2 value


@torch.no_grad()
def _cached_candidates(lm, tokenizer, prefixes: list[list[int]], answers: list[list[int]], budgets: list[int],
                       stats: DecodeStats, share_prefix: bool = False,
                       log: list[list] | None = None) -> list[Candidate]:
    """Batched KV-cached greedy continuation of prompt+answer rows (`prefixes[i]` already ends with `answers[i]`).

    Returns a `Candidate` per row: its steps' tokens and each step's top-1 id and top-1 minus top-2 logit margin (what
    exact mode certifies with). Finished rows are dropped from the batch and the cache. With `share_prefix` the rows'
    longest common prefix (the contract's system prompt) is computed once, batch 1, and its KV cache shared. `log`
    (calibration only): each row's step logits are appended to `log[i]` (on the CPU).
    """
    pad = pad_id(tokenizer)
    n = len(prefixes)
    out_rows = [Candidate([], None, [], []) for _ in range(n)]
    new = [list(a) for a in answers]
    live = [i for i in range(n) if budgets[i] > 0]
    if not live:
        return out_rows
    rows = [prefixes[i] for i in live]
    shared = common_prefix(rows) if share_prefix else 0
    cache = None
    if shared:
        cache = prefix_forward(lm, rows[0][:shared])
        stats.forwards += 1
        cache.batch_repeat_interleave(len(rows))
    ids, mask = left_pad([r[shared:] for r in rows], pad)
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    mask = torch.cat([torch.ones(len(rows), shared, dtype=mask.dtype, device=mask.device), mask], 1)
    step_ids = ids
    while live:
        pos = position_ids(mask)[:, -step_ids.size(1):]
        out = lm(input_ids=step_ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                 logits_to_keep=1)
        stats.forwards += 1
        cache = out.cache
        logits = out.logits[:, -1].float()
        next_ids = logits.argmax(-1)
        top = logits.topk(2, dim=-1)
        keep = []
        for k, (i, token) in enumerate(zip(live, next_ids.tolist())):
            row = out_rows[i]
            row.steps.append(token)
            row.top1.append(int(top.indices[k, 0]))
            row.margins.append(float(top.values[k, 0] - top.values[k, 1]))
            if log is not None:
                log[i].append(logits[k].cpu())
            stop = stop_reason(tokenizer, new[i], token)
            if stop:
                out_rows[i] = row._replace(stop=stop)
            elif len(row.steps) < budgets[i]:
                keep.append(k)
        if not keep:
            break
        if len(keep) < len(live):
            index = torch.tensor(keep, device=ids.device)
            cache.batch_select_indices(index)
            mask, next_ids = mask[index], next_ids[index]
            live = [live[k] for k in keep]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        step_ids = next_ids[:, None]
    return out_rows


@torch.no_grad()
def _exact_bucket(lm, tokenizer, prompts: list[list[int]], max_new_tokens: int, bound: float,
                  stats: DecodeStats) -> list[Generation]:
    n = len(prompts)
    new: list[list[int]] = [[] for _ in range(n)]        # the answer so far: every step certified or reference
    taken = [0] * n                                      # steps settled (answer tokens + a final EOS)
    stop: list[str | None] = [None] * n
    used_reference = [False] * n
    active = [i for i in range(n) if max_new_tokens > 0]
    while active:
        stats.rounds += 1
        prefixes = [prompts[i] + new[i] for i in active]
        cands = _cached_candidates(lm, tokenizer, prefixes, [new[i] for i in active],
                                   [max_new_tokens - taken[i] for i in active], stats, share_prefix=True)
        still = []
        for i, cand in zip(active, cands):
            diverged = False
            for token, top1, margin in zip(cand.steps, cand.top1, cand.margins):
                if top1 == token and margin > bound:
                    stats.certified_tokens += 1
                    if stats.min_certified_margin is None or margin < stats.min_certified_margin:
                        stats.min_certified_margin = margin
                else:
                    reference = _reference_step(lm, prompts[i] + new[i])
                    stats.forwards += 1
                    stats.reference_steps += 1
                    used_reference[i] = True
                    if reference != token:
                        stats.mismatches += 1
                        token, diverged = reference, True
                taken[i] += 1
                stop[i] = stop_reason(tokenizer, new[i], token)
                if stop[i] or diverged:
                    break
            if stop[i] is None and taken[i] < max_new_tokens:
                still.append(i)                          # diverged: re-decode from the corrected prefix
        active = still
    stats.steps += sum(taken)
    stats.certified_rows += sum(not u for u in used_reference)
    return [Generation(t, tokenizer.decode(t), s or "budget") for t, s in zip(new, stop)]


@torch.no_grad()
def decode(lm, tokenizer, prompts: list[list[int]], max_new_tokens: int, mode: str = "exact", batch_size: int = 16,
           bound: float | None = None) -> tuple[list[Generation], DecodeStats]:
    """Greedy-decode prompt token lists under the contract; (generations in input order, stats).

    mode "reference" is the protocol loop (batch 1, KV off); "exact" returns the reference's outputs token for token
    at cached speed (see the module docstring); "cached" is batched KV-cached decoding without the check.
    `bound` is exact mode's certification margin (default: DEFAULT_BOUNDS for the model's dtype, or the autocast
    dtype when autocast is on).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    stats = DecodeStats(mode=mode, rows=len(prompts))
    if mode == "exact":
        if bound is None:
            dtype = next(lm.parameters()).dtype
            device_type = torch.device(lm.device).type
            if torch.is_autocast_enabled(device_type):          # autocast rounds like its dtype, not the weights'
                dtype = torch.get_autocast_dtype(device_type)
            if dtype not in DEFAULT_BOUNDS:
                raise ValueError(f"no measured certification bound for {dtype}: pass bound= (calibration.measure_logit_gap)")
            bound = DEFAULT_BOUNDS[dtype]
        if not bound > 0:
            raise ValueError("bound must be > 0")
        stats.bound = float(bound)
    start = time.perf_counter()
    out: list[Generation | None] = [None] * len(prompts)
    if mode == "reference":
        for i, prompt in enumerate(prompts):
            out[i] = _reference_row(lm, tokenizer, prompt, max_new_tokens, stats)
    else:
        for rows in length_buckets(prompts, batch_size):
            if mode == "exact":
                gens = _exact_bucket(lm, tokenizer, [prompts[i] for i in rows], max_new_tokens, stats.bound, stats)
            else:
                cands = _cached_candidates(lm, tokenizer, [prompts[i] for i in rows], [[] for _ in rows],
                                           [max_new_tokens] * len(rows), stats)
                gens = []
                for steps, stop, _, _ in cands:
                    tokens = steps[:-1] if stop == "eos" else steps
                    gens.append(Generation(tokens, tokenizer.decode(tokens), stop or "budget"))
                    stats.steps += len(steps)
            for i, g in zip(rows, gens):
                out[i] = g
    stats.seconds = time.perf_counter() - start
    return out, stats
