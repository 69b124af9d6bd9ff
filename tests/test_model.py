"""The heads' standardisation and prior biases, and that a bundle carries them."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import run_tiny
from safetensors.torch import load_file, save_file

from emoloom.modeling.model import Heads, load_bundle


def test_init_from_data_standardises_features_and_starts_at_the_priors():
    torch.manual_seed(0)
    features = torch.randn(200, 16) * torch.linspace(0.1, 20.0, 16) + 5.0    # wildly different feature scales
    labels = (torch.rand(200, 28) < torch.linspace(0.02, 0.5, 28)).float()
    vad = torch.rand(200, 3) * 0.5 + 0.25
    heads = Heads(16)
    heads.init_from_data(features, labels, vad)
    z = (features - heads.feature_mean) / heads.feature_scale
    assert torch.allclose(z.mean(0), torch.zeros(16), atol=1e-5)
    assert torch.allclose(z.std(0), torch.full((16,), 0.25), atol=1e-5)        # 1 / sqrt(16)
    assert torch.allclose(torch.sigmoid(heads.labels.bias), labels.mean(0).clamp(1e-3, 1 - 1e-3), atol=1e-5)
    assert torch.allclose(torch.sigmoid(heads.vad.bias), vad.mean(0), atol=1e-5)
    with torch.no_grad():
        heads.labels.weight.zero_()
        heads.vad.weight.zero_()
        _, vad_out = heads(features[:3])
    assert torch.allclose(vad_out, vad.mean(0).expand(3, 3), atol=1e-5)


def test_bundle_carries_the_feature_statistics(tiny_run, nrc, tmp_path):
    run_tiny(tiny_run, "stats", nrc)
    bundle = tiny_run / "stats/model"
    saved = load_file(str(bundle / "trainable.safetensors"))
    model, _, _ = load_bundle(bundle)
    assert torch.equal(model.heads.feature_mean, saved["heads.feature_mean"])
    assert torch.equal(model.heads.feature_scale, saved["heads.feature_scale"])
    assert saved["heads.feature_mean"].abs().sum() > 0          # fitted, not the defaults

    stale = tiny_run / "stale/model"                              # beside the original: the backbone path still holds
    shutil.copytree(bundle, stale)
    save_file({k: v for k, v in saved.items() if not k.startswith("heads.feature_")},
              str(stale / "trainable.safetensors"))
    with pytest.raises(ValueError, match="feature statistics are missing"):
        load_bundle(stale)
