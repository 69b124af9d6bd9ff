"""The in-training dev score of Algorithm 2: decode the first dev rows, score S = MacroF1 + beta (1-RMSE) + gamma ParseOK.

It only ranks checkpoints of one run, so it decodes with the KV cache (`eval_use_cache`) under the training precision;
the evaluation stages decode protocol-true (KV off).
"""

from __future__ import annotations

import torch

from emoloom.core.contract import json_end, parse_output
from emoloom.evaluation.decoding import Generation
from emoloom.evaluation.metrics import composite_s, evaluate
from emoloom.evaluation.runner import as_result
from emoloom.modeling.batching import left_pad, position_ids
from emoloom.modeling.model import EmoModel, heads_decisions
from emoloom.training.config import SFTConfig
from emoloom.training.sft_data import SFTExample, collate


@torch.no_grad()
def greedy_decode(lm, tokenizer, prompts: list[list[int]], max_new_tokens: int,
                  use_cache: bool = False) -> list[Generation]:
    """Decode a batch of prompt token lists (left-padded together) greedily.

    Used by the in-training dev evaluation; batching makes it not token-exact to the protocol (use `decode`)."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    ids, mask = left_pad(prompts, pad)
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    new: list[list[int]] = [[] for _ in prompts]
    stop: list[str | None] = [None] * len(prompts)
    past, step_ids = None, ids
    for _ in range(max_new_tokens):
        pos = position_ids(mask)
        if past is not None:
            pos = pos[:, -step_ids.size(1):]
        out = lm(input_ids=step_ids, attention_mask=mask, position_ids=pos, cache=past,
                 use_cache=use_cache, logits_to_keep=1)
        next_ids = out.logits[:, -1].argmax(-1)
        live = torch.tensor([s is None for s in stop], device=ids.device)
        next_ids = torch.where(live, next_ids, torch.full_like(next_ids, pad))
        ids = torch.cat([ids, next_ids[:, None]], 1)
        mask = torch.cat([mask, live[:, None].long()], 1)
        if use_cache:
            past, step_ids = out.cache, next_ids[:, None]
        else:
            step_ids = ids
        for i, token in enumerate(next_ids.tolist()):
            if stop[i] is not None:
                continue
            if token == eos:
                stop[i] = "eos"
                continue
            new[i].append(token)
            if "}" in tokenizer.decode([token]) and json_end(tokenizer.decode(new[i])) is not None:
                stop[i] = "json"
        if all(s is not None for s in stop):
            break
    return [Generation(tokens, tokenizer.decode(tokens), s or "budget") for tokens, s in zip(new, stop)]


@torch.no_grad()
def dev_evaluation(model: EmoModel, tokenizer, dev: list[dict], dev_examples: list[SFTExample], cfg: SFTConfig,
                   device: torch.device) -> dict:
    """Decode the dev rows and score them (S of Algorithm 2), plus the heads' macro-F1 and RMSE."""
    model.eval()
    results, heads_pred = [], []
    for i in range(0, len(dev_examples), cfg.eval_batch):
        chunk = dev_examples[i:i + cfg.eval_batch]
        gens = greedy_decode(model.lm, tokenizer, [e.prompt_ids for e in chunk], cfg.max_new_tokens,
                             use_cache=cfg.eval_use_cache)
        results += [parse_output(g.text) for g in gens]
        batch = collate(chunk, tokenizer.pad_token_id).to(device)
        out = model(batch.input_ids, batch.attention_mask, batch.pool_mask, prefix_ids=batch.prefix_ids)
        heads_pred += [as_result(h, True, None) for h in heads_decisions(out.label_logits, out.vad)]
    model.train()
    scored = evaluate(dev, results)
    heads = evaluate(dev, heads_pred)
    paper = scored["paper"]
    f1, rmse = paper["labels"]["macro_f1"] or 0.0, paper["vad"]["rmse"] if paper["vad"]["rmse"] is not None else 1.0
    return {"parse_ok": scored["parse_ok"], "macro_f1": f1, "rmse": rmse,
            "S": composite_s(f1, rmse, scored["parse_ok"], beta=cfg.beta, gamma=cfg.gamma),
            "strict_macro_f1": scored["strict"]["labels"]["macro_f1"],
            "heads_macro_f1": heads["paper"]["labels"]["macro_f1"], "heads_rmse": heads["paper"]["vad"]["rmse"],
            "failures": scored["failures"]}
