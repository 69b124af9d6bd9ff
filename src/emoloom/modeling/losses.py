"""The training losses of the paper, each a plain function of tensors (docs/training.md has the formulas).

    L = lambda_lm L_lm + lambda_cls L_cls + lambda_reg L_reg + lambda_vad L_vad + lambda_app L_app + lambda_flip L_flip
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def lm_loss(log_probs: torch.Tensor, targets: torch.Tensor, token_weights: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Cross-entropy over answer tokens from their log-probabilities (B, K, V), targets -100 elsewhere: the mean, or
    with token_weights (B, K) the weighted mean sum_t w_t CE_t / sum_t w_t over the answer tokens."""
    nll = F.nll_loss(log_probs.reshape(-1, log_probs.size(-1)), targets.reshape(-1), ignore_index=-100,
                     reduction="none").reshape(targets.shape)
    w = torch.as_tensor(token_weights, dtype=nll.dtype, device=nll.device).expand_as(nll) * (targets != -100)
    return (nll * w).sum() / w.sum().clamp_min(EPS)


def cls_loss(label_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_cls = 1/K sum_k BCE(p_k, y_k), averaged over the batch."""
    return F.binary_cross_entropy_with_logits(label_logits.float(), labels.float())


def reg_loss(vad: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_reg = ||v - v_hat||_2^2, averaged over the batch."""
    return ((vad.float() - target.float()) ** 2).sum(-1).mean()


def expected_text_vad(lexical_probs: torch.Tensor, positions: torch.Tensor,
                      lexical_vad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """v_text(a) = sum_j w_j l(t_j) / sum_j w_j, in expectation under the teacher-forced token distributions.

    lexical_probs (B, J, N) are the probabilities of the N vocabulary tokens that are lexicon words (the others carry
    no VAD: w_j = 1{l(t_j) exists} becomes the probability mass on lexicon words); positions (B, J) marks the
    rationale tokens; lexical_vad (N, 3) is the lexicon VAD of those tokens. Returns (v_text (B, 3), lexical mass (B,)).
    """
    probs = lexical_probs.float() * positions.unsqueeze(-1)
    total = probs.sum((1, 2))
    weighted = (probs.sum(1) @ lexical_vad.float())                      # (B, 3): sum_j sum_t p_j(t) l(t)
    return weighted / (total.unsqueeze(-1) + EPS), total


def vad_loss(v_text: torch.Tensor, target: torch.Tensor, lexical_mass: torch.Tensor,
             min_mass: float = 1e-3) -> torch.Tensor:
    """L_vad = ||v_text(a) - v_hat||_2, over rows whose rationale puts some probability on lexicon words."""
    keep = lexical_mass > min_mass
    if not keep.any():
        return v_text.sum() * 0.0
    return torch.linalg.vector_norm(v_text[keep] - target[keep].float(), dim=-1).mean()


def app_loss(scores: torch.Tensor, prototypes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_app = 1/M sum_m BCE(s_m, s~_m), over the atoms the gold labels determine (mask = 1). Computed in fp32
    outside autocast: CUDA autocast refuses BCE on probabilities (the verifier gives scores, not logits)."""
    with torch.autocast(scores.device.type, enabled=False):
        bce = F.binary_cross_entropy(scores.float().clamp(EPS, 1 - EPS), prototypes.float(), reduction="none")
    return (bce * mask).sum() / mask.sum().clamp_min(1.0)


def flip_loss(valence: torch.Tensor, flipped_valence: torch.Tensor) -> torch.Tensor:
    """L_flip = |(v(x) - 1/2) + (v(x') - 1/2)|, averaged over flip pairs."""
    return ((valence.float() - 0.5) + (flipped_valence.float() - 0.5)).abs().mean()
