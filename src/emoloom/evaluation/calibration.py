"""The measurement behind exact decoding's certification bounds (decoding.DEFAULT_BOUNDS; docs/decoding.md):
how far the cached decoder's step logits, which certify exact mode's tokens, move from the reference step's. Used by
`benchmarks/bench_decoding.py --calibrate` to repeat it for another backbone or machine."""

from __future__ import annotations

import torch

from emoloom.evaluation.decoding import DecodeStats, _cached_candidates, reference_logits
from emoloom.modeling.batching import length_buckets


@torch.no_grad()
def measure_logit_gap(lm, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 16,
                      positions: int = 4) -> dict:
    """How far the cached decoder's step logits move from the reference step's.

    Decodes `prompts` as exact mode does (batches of similar length, the shared prefix once, finished rows dropped),
    picks `positions` evenly spaced steps per row (the first and last included), runs the reference step there and
    compares its full logit vector r with the cached step's k at the same position: the shift of any margin is at
    most spread = max(r - k) - min(r - k). Also returns the cached steps' top-1 minus top-2 margins at every step (how
    many a bound would leave uncertified).
    """
    spreads, abs_diffs, margins = [], [], []
    for rows in length_buckets(prompts, batch_size):
        prefixes = [prompts[i] for i in rows]
        steps_logits: list[list[torch.Tensor]] = [[] for _ in rows]
        cands = _cached_candidates(lm, tokenizer, prefixes, [[] for _ in rows], [max_new_tokens] * len(rows),
                                   DecodeStats("exact"), share_prefix=True, log=steps_logits)
        for prompt, cand, logged in zip(prefixes, cands, steps_logits):
            margins += cand.margins
            picks = sorted({round(k * (len(cand.steps) - 1) / max(positions - 1, 1)) for k in range(positions)})
            for j in picks if cand.steps else []:
                ref = reference_logits(lm, prompt + cand.steps[:j]).float()[0]
                d = (ref - logged[j]).double()
                spreads.append(float(d.max() - d.min()))
                abs_diffs.append(float(d.abs().max()))
    return {"positions": len(spreads), "max_spread": max(spreads, default=0.0),
            "max_abs_diff": max(abs_diffs, default=0.0), "spreads": spreads, "steps": len(margins),
            "margins": margins, "dtype": str(next(lm.parameters()).dtype), "threads": torch.get_num_threads()}
