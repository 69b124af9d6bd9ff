"""Heads mode: labels and VAD read from an EmoModel's heads, one forward per prompt, no decoding (the fast path of
screening and the `heads` evaluation mode)."""

from __future__ import annotations

import copy

import torch

from emoloom.evaluation.decoding import pad_id
from emoloom.modeling.batching import common_prefix, left_pad, length_buckets, position_ids, prefix_forward
from emoloom.modeling.model import heads_decisions


@torch.no_grad()
def heads_mode(model, tokenizer, prompts: list[list[int]], batch_size: int = 16,
               share_prefix: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The screening fast path: (label logits, VAD) of an `EmoModel`'s heads for each prompt, no decoding.

    The quantity of `EmoModel.predict_heads` (the mean of the last hidden states over every prompt token, through the
    heads) in one forward per prompt, batched by length. With `share_prefix` the prompts' longest common prefix (the
    contract's system prompt, ~155 of ~180 tokens) is run once and its KV cache and hidden-state sum reused, so each
    row costs a forward over its own ~30 tokens; this rounds slightly differently from `predict_heads` (not a protocol
    output: the benchmark reports the difference). Returns float32 CPU tensors in input order.
    """
    lm, pad = model.lm, pad_id(tokenizer)
    heads_dtype = next(model.heads.parameters()).dtype
    label_out: list[torch.Tensor | None] = [None] * len(prompts)
    vad_out: list[torch.Tensor | None] = [None] * len(prompts)
    shared = common_prefix(prompts) if share_prefix and prompts else 0
    if shared:
        prefix_cache, prefix_sum = prefix_forward(lm, prompts[0][:shared], hidden=True)
    for rows in length_buckets(prompts, batch_size):
        ids, own = left_pad([prompts[i][shared:] for i in rows], pad)
        ids, own = ids.to(lm.device), own.to(lm.device)
        mask = torch.cat([torch.ones(len(rows), shared, dtype=own.dtype, device=own.device), own], 1)
        cache = None
        if shared:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
        out = lm(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)[:, shared:], cache=cache,
                 use_cache=bool(shared), output_hidden_states=True, logits_to_keep=1)
        total = (out.hidden_states[-1].float() * own.unsqueeze(-1).float()).sum(1)
        if shared:
            total = total + prefix_sum
        pooled = total / (own.sum(1, keepdim=True).float() + shared)
        label_logits, vad = model.heads(pooled.to(heads_dtype))
        for k, i in enumerate(rows):
            label_out[i], vad_out[i] = label_logits[k].float().cpu(), vad[k].float().cpu()
    if not prompts:
        return torch.empty(0), torch.empty(0, 3)
    return torch.stack(label_out), torch.stack(vad_out)


@torch.no_grad()
def heads_predict(model, tokenizer, prompts: list[list[int]], batch_size: int = 16) -> list[dict]:
    """Heads mode's answers: one forward per prompt (the shared system prompt run once), decided by `heads_decisions`."""
    return heads_decisions(*heads_mode(model, tokenizer, prompts, batch_size))
