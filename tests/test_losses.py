"""Each loss on hand-computed cases."""

import math

import pytest
import torch

from emoloom.modeling import losses


def test_cls_loss_matches_the_paper_formula():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    by_hand = sum(-(y[i, k] * math.log(p[i, k]) + (1 - y[i, k]) * math.log(1 - p[i, k])).item()
                  for i in range(2) for k in range(2)) / 4
    assert losses.cls_loss(logits, y).item() == pytest.approx(by_hand, rel=1e-6)


def test_reg_loss_is_squared_l2():
    v = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.2]])
    t = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.2]])
    assert losses.reg_loss(v, t).item() == pytest.approx((0.09 + 0.16) / 2)


def test_flip_loss():
    assert losses.flip_loss(torch.tensor([0.9, 0.3]), torch.tensor([0.1, 0.4])).item() == pytest.approx(
        (abs(0.4 - 0.4) + abs(-0.2 - 0.1)) / 2)


def test_app_loss_masks_undetermined_atoms():
    s = torch.tensor([[0.8, 0.3]])
    proto = torch.tensor([[1.0, 0.5]])
    mask = torch.tensor([[1.0, 0.0]])
    assert losses.app_loss(s, proto, mask).item() == pytest.approx(-math.log(0.8))


def test_expected_text_vad_by_hand():
    # vocab: 0 = "happy" (lexical), 1 = "sad" (lexical), 2 = "the" (not lexical)
    token_vad = torch.tensor([[1.0, 0.8, 0.6], [0.0, 0.2, 0.4], [0.5, 0.5, 0.5]])
    lexical = torch.tensor([0, 1])                           # the lexical tokens' ids
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.0, 0.0, 1.0], [0.1, 0.1, 0.8]]])
    positions = torch.tensor([[1.0, 1.0, 0.0]])              # the third position is not in the rationale
    v_text, mass = losses.expected_text_vad(probs[..., lexical], positions, token_vad[lexical])
    # weights: position 0 gives 0.5 happy + 0.25 sad; position 1 gives nothing lexical
    expected = (0.5 * token_vad[0] + 0.25 * token_vad[1]) / 0.75
    assert torch.allclose(v_text[0], expected, atol=1e-6) and mass.item() == pytest.approx(0.75)
    target = torch.tensor([[0.5, 0.5, 0.5]])
    assert losses.vad_loss(v_text, target, mass).item() == pytest.approx(torch.dist(expected, target[0]).item(),
                                                                         rel=1e-5)


def test_vad_loss_ignores_rows_without_lexical_mass():
    v = torch.tensor([[0.9, 0.9, 0.9], [0.5, 0.5, 0.5]], requires_grad=True)
    out = losses.vad_loss(v, torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    assert out.item() == pytest.approx(math.sqrt(0.75))
    out.backward()
    assert v.grad[0].abs().sum() == 0


def test_lm_loss_ignores_masked_targets():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    targets = torch.tensor([[0, -100]])
    assert losses.lm_loss(logits.log_softmax(-1), targets).item() == pytest.approx(
        -math.log(math.exp(2) / (math.exp(2) + 1)))


def test_lm_loss_token_weights_give_a_weighted_mean():
    log_probs = torch.tensor([[[0.0, -1.0], [-2.0, 0.0], [0.0, -3.0]]])      # CE of targets 1, 0, 0: 1, 2, 0
    targets = torch.tensor([[1, 0, -100]])
    assert losses.lm_loss(log_probs, targets).item() == pytest.approx(1.5)
    weights = torch.tensor([[3.0, 1.0, 5.0]])                                # the masked third token stays out
    assert losses.lm_loss(log_probs, targets, weights).item() == pytest.approx((3 * 1 + 1 * 2) / 4)
