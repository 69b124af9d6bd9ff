"""The measurement behind exact decoding's certification bounds (decoding.DEFAULT_BOUNDS; docs/decoding.md):
how far the certifying forward's and the cached decoder's logits move from the reference step's. Used by
`benchmarks/bench_decoding.py --calibrate` to repeat it for another backbone or machine."""

from __future__ import annotations

import torch

from emoloom.evaluation.decoding import certifying_forward, pad_id, reference_logits, stop_reason
from emoloom.modeling.batching import left_pad, length_buckets, position_ids


@torch.no_grad()
def measure_logit_gap(lm, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 16,
                      positions: int = 4) -> dict:
    """How far the certifying forward's (and the cached decoder's) logits move from the reference step's.

    Decodes `prompts` cached, picks `positions` evenly spaced steps per row (the first and last included), runs
    the reference step there and compares its full logit vector r with the certifying forward's c (and the cached
    step's k) at the same position: the shift of any margin is at most spread = max(r - c) - min(r - c). Also
    returns the certifying forward's top-1 minus top-2 margins at every step (how many a bound would leave
    uncertified).
    """
    spreads, cached_spreads, abs_diffs, margins = [], [], [], []
    for rows in length_buckets(prompts, batch_size):
        prefixes = [prompts[i] for i in rows]
        steps_logits: list[list[torch.Tensor]] = [[] for _ in rows]
        cands = _cached_candidates_logged(lm, tokenizer, prefixes, max_new_tokens, steps_logits)
        full, keep = certifying_forward(lm, tokenizer, prefixes, cands)
        full = full.float()
        for r, (prompt, cand) in enumerate(zip(prefixes, cands)):
            first = keep - 1 - len(cand)
            top = full[r, first:first + len(cand)].topk(2, dim=-1).values
            margins += (top[:, 0] - top[:, 1]).tolist()
            picks = sorted({round(k * (len(cand) - 1) / max(positions - 1, 1)) for k in range(positions)})
            for j in picks if cand else []:
                ref = reference_logits(lm, prompt + cand[:j]).float()[0]
                d = (ref - full[r, first + j]).double()
                spreads.append(float(d.max() - d.min()))
                abs_diffs.append(float(d.abs().max()))
                dk = (ref - steps_logits[r][j].float()).double()
                cached_spreads.append(float(dk.max() - dk.min()))
    return {"positions": len(spreads), "max_spread": max(spreads, default=0.0),
            "max_abs_diff": max(abs_diffs, default=0.0), "max_cached_spread": max(cached_spreads, default=0.0),
            "spreads": spreads, "cached_spreads": cached_spreads, "steps": len(margins),
            "margins": margins,
            "dtype": str(next(lm.parameters()).dtype), "threads": torch.get_num_threads()}


def _cached_candidates_logged(lm, tokenizer, prompts, max_new_tokens, log):
    """Batched cached greedy decoding without early row dropping, keeping every step's logits (calibration only)."""
    pad = pad_id(tokenizer)
    ids, mask = left_pad(prompts, pad)
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    new = [[] for _ in prompts]
    steps = [[] for _ in prompts]
    done = [False] * len(prompts)
    cache, step_ids = None, ids
    for _ in range(max_new_tokens):
        out = lm(input_ids=step_ids, attention_mask=mask, position_ids=position_ids(mask)[:, -step_ids.size(1):],
                 cache=cache, use_cache=True, logits_to_keep=1)
        cache = out.cache
        next_ids = out.logits[:, -1].argmax(-1)
        for i, token in enumerate(next_ids.tolist()):
            if not done[i]:
                log[i].append(out.logits[i, -1].detach().cpu())
                steps[i].append(token)
                done[i] = stop_reason(tokenizer, new[i], token) is not None
        if all(done):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        step_ids = next_ids[:, None]
    return steps
