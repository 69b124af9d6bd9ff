"""The loss terms of one micro-batch (the paper's Algorithm 1, lines 7-13), each a function in emoloom.modeling.losses.

One forward pass over the batch (its shared prompt prefix once, then every row's own part and answer; the
Valence-Flip twins ride along as extra rows) gives the answer logits and the heads' outputs;
every active term (weight > 0) is computed from them, and the mean answer-token entropy H_t feeds the A/B sampler.
"""

from __future__ import annotations

import torch

from emoloom.modeling import losses
from emoloom.modeling.model import EmoModel
from emoloom.modeling.verifier import AppraisalVerifier
from emoloom.training.config import LossWeights
from emoloom.training.sft_data import Batch


def step_losses(model: EmoModel, batch: Batch, verifier: AppraisalVerifier, token_vad: torch.Tensor,
                token_lexical: torch.Tensor, weights: LossWeights = LossWeights()
                ) -> tuple[dict[str, torch.Tensor], float]:
    """The active loss terms for one micro-batch, and the mean answer-token entropy (the sampler's H_t)."""
    active = set(weights.active)
    logits, label_logits, vad = model(batch.input_ids, batch.attention_mask, batch.pool_mask,
                                      logits_to_keep=batch.answer_len + 1, prefix_ids=batch.prefix_ids)
    b = batch.n_examples                                       # rows after the examples are Valence-Flip twins
    logits = logits[:b, :-1].float()                           # position t predicts answer token t
    probs = logits.softmax(-1)
    terms = {}
    if "lm" in active:
        terms["lm"] = losses.lm_loss(logits, batch.answer_targets)
    if "cls" in active:
        terms["cls"] = losses.cls_loss(label_logits[:b], batch.labels)
    if "reg" in active:
        terms["reg"] = losses.reg_loss(vad[:b], batch.vad)
    if "vad" in active:
        v_text, mass = losses.expected_text_vad(logits, batch.rationale_mask, token_vad, token_lexical)
        terms["vad"] = losses.vad_loss(v_text, batch.vad, mass)
    if "app" in active:
        counts_a, n_a = verifier.counts_from_probs(probs, batch.answer_mask)
        counts_x, n_x = verifier.counts_from_ids(batch.text_ids, batch.text_mask)
        terms["app"] = losses.app_loss(verifier(counts_x + counts_a, n_x + n_a), batch.appraisal, batch.appraisal_mask)
    if "flip" in active:
        terms["flip"] = (losses.flip_loss(vad[batch.flip_rows, 0], vad[b:, 0]) if batch.flip_rows.numel()
                         else vad.sum() * 0.0)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    mean_entropy = float((entropy.detach() * batch.answer_mask).sum() / batch.answer_mask.sum())
    return terms, mean_entropy
