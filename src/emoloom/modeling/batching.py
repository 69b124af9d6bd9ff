"""Batching shared by training, decoding and the heads: left padding and the position ids that go with it.

Left padding lines every row up at the end of the batch (answers end at the last position; the next token of every
row is read at the same place), and position ids are counted from each row's first real token, as `generate` does.
"""

from __future__ import annotations

import copy

import torch


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), left-padded to the longest row."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
    return ids, mask


def drop_pad_columns(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(mask, *tensors) without the leading columns that are padding in every row: some rows of a left-padded batch,
    as narrow as the longest of them."""
    k = int(mask.any(0).int().argmax())
    return tuple(t[:, k:] for t in (mask, *tensors))


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp_min(0)


def length_buckets(prompts: list[list[int]], batch_size: int) -> list[list[int]]:
    """Row indices grouped into batches of similar prompt length (less left padding)."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def common_prefix(rows: list[list[int]], limit: int | None = None) -> int:
    """Length of the longest common prefix of `rows`, at most `limit`, leaving every row at least one token of its
    own."""
    bound = min(len(r) for r in rows) - 1
    bound = max(min(bound, limit) if limit is not None else bound, 0)
    first = rows[0]
    for k in range(bound):
        if any(r[k] != first[k] for r in rows):
            return k
    return bound


def prefix_forward(lm, prefix: list[int]):
    """Batch-1 forward over a shared prompt prefix: its KV cache (the decoder alone: no logits are needed)."""
    x = torch.tensor([prefix], dtype=torch.long, device=lm.device)
    mask = torch.ones_like(x)
    return lm.get_decoder()(input_ids=x, attention_mask=mask, position_ids=position_ids(mask), use_cache=True).cache


def repeat_cache(cache, rows: int):
    """A prefix's KV cache for `rows` rows that leaves `cache` as it is: new layer objects over repeated tensors (a
    forward replaces a dynamic layer's tensors when it appends, never writes into them), gradients kept."""
    out = copy.copy(cache)
    out.layers = [copy.copy(layer) for layer in cache.layers]
    out.batch_repeat_interleave(rows)
    return out
