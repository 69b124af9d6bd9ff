"""Heads mode: labels and VAD read from an EmoModel's heads, one forward per prompt, no decoding (the fast path of
screening and the `heads` evaluation mode). Each prompt is pooled over its user turn, as in training."""

from __future__ import annotations

import torch

from emoloom.core.contract import user_turn_start
from emoloom.evaluation.decoding import pad_id
from emoloom.modeling.model import heads_decisions


@torch.no_grad()
def heads_mode(model, tokenizer, prompts: list[list[int]], batch_size: int = 16,
               share_prefix: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(label logits, VAD) of an `EmoModel`'s heads for each prompt, float32 on the CPU, in input order.

    Prompts run in batches of similar length; with `share_prefix` each batch's common system prompt (159 of ~181
    tokens) runs once and every row only its own ~30 tokens (the same quantity as the plain forward, up to rounding).
    """
    if not prompts:
        return torch.empty(0, model.heads.labels.out_features), torch.empty(0, 3)
    starts = [user_turn_start(tokenizer, p) for p in prompts]
    label_logits, vad = model.predict_heads(prompts, starts, pad_id(tokenizer), batch_size, share_prefix)
    return label_logits.float().cpu(), vad.float().cpu()


def heads_predict(model, tokenizer, prompts: list[list[int]], batch_size: int = 16) -> list[dict]:
    """Heads mode's answers, decided by `heads_decisions`."""
    return heads_decisions(*heads_mode(model, tokenizer, prompts, batch_size))
