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


def step_losses(model: EmoModel, batch: Batch, verifier: AppraisalVerifier, lexical_ids: torch.Tensor,
                lexical_vad: torch.Tensor, weights: LossWeights = LossWeights(),
                field_weights: tuple[float, float] = (1.0, 1.0)) -> tuple[dict[str, torch.Tensor], dict]:
    """The active loss terms for one micro-batch, and what the loop keeps of it: the mean answer-token entropy (the
    sampler's H_t).

    lexical_ids (N,) are the vocabulary tokens that are lexicon words and lexical_vad (N, 3) their VAD (L_vad). The
    answer distributions are normalised once (log-softmax over the vocabulary); L_vad and L_app only gather the
    probabilities of the tokens they weigh. L_lm weighs the tokens of the labels list and of the vad object by
    `field_weights` (sft.train.label_token_weight, vad_token_weight), the other answer tokens by 1.
    """
    active = set(weights.active)
    b = batch.n_examples                                       # rows after the examples are Valence-Flip twins
    out = model(batch.input_ids, batch.attention_mask, batch.pool_mask, logits_to_keep=batch.answer_len + 1,
                prefix_ids=batch.prefix_ids, logit_rows=b)
    label_logits, vad = out.label_logits, out.vad
    log_probs = out.logits[:, :-1].float().log_softmax(-1)     # position t predicts answer token t
    terms = {}
    if "lm" in active:
        token_weights = 1.0 + (field_weights[0] - 1.0) * batch.label_mask + (field_weights[1] - 1.0) * batch.vad_mask
        terms["lm"] = losses.lm_loss(log_probs, batch.answer_targets, token_weights)
    if "cls" in active:
        terms["cls"] = losses.cls_loss(label_logits[:b], batch.labels)
    if "reg" in active:
        terms["reg"] = losses.reg_loss(vad[:b], batch.vad)
    if "vad" in active or "app" in active:
        lexical_probs = log_probs.index_select(-1, lexical_ids).exp()
    if "vad" in active:
        v_text, mass = losses.expected_text_vad(lexical_probs, batch.rationale_mask, lexical_vad)
        terms["vad"] = losses.vad_loss(v_text, batch.vad, mass)
    if "app" in active:
        same = torch.equal(verifier.feature_ids, lexical_ids)
        feature_probs = lexical_probs if same else log_probs.index_select(-1, verifier.feature_ids).exp()
        counts_a, n_a = verifier.counts_from_probs(feature_probs, batch.answer_mask)
        counts_x, n_x = verifier.counts_from_ids(batch.text_ids, batch.text_mask)
        terms["app"] = losses.app_loss(verifier(counts_x + counts_a, n_x + n_a), batch.appraisal, batch.appraisal_mask)
    if "flip" in active:
        terms["flip"] = (losses.flip_loss(vad[batch.flip_rows, 0], vad[b:, 0]) if batch.flip_rows.numel()
                         else vad.sum() * 0.0)
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        mean_entropy = float((entropy * batch.answer_mask).sum() / batch.answer_mask.sum())
    return terms, {"entropy": mean_entropy}
