"""The training precision: what `precision` asks for, and `auto`'s measured choice on CPUs with bf16 instructions."""

from __future__ import annotations

import math

import pytest
import torch

from emoloom.core import device as dev
from emoloom.core.errors import ParamError

CPU = torch.device("cpu")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU whose flags show AVX512-BF16 (whatever this machine has)."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(dev, "_has_cpu_flag", lambda flag: flag == "avx512_bf16")


@pytest.mark.parametrize("speedup, expected", [(0.62, None), (1.0, None), (1.3, torch.bfloat16)])
def test_auto_uses_bf16_only_where_the_probe_finds_it_faster(bf16_cpu, monkeypatch, speedup, expected):
    monkeypatch.setattr(dev, "cpu_bf16_speedup", lambda: speedup)
    dtype, why = dev.autocast_dtype("auto", CPU)
    assert dtype == expected and f"{speedup:.2f}x" in why
    assert dev.autocast_dtype("bf16", CPU)[0] == torch.bfloat16          # asked for: no probe decides
    assert dev.autocast_dtype("fp32", CPU)[0] is None


def test_without_bf16_instructions_auto_is_fp32_and_bf16_is_refused(monkeypatch):
    monkeypatch.setattr(dev, "_has_cpu_flag", lambda flag: False)
    monkeypatch.setattr(dev, "cpu_bf16_speedup", lambda: pytest.fail("no probe without bf16 instructions"))
    assert dev.autocast_dtype("auto", CPU) == (None, "auto: this CPU has no bf16 instructions")
    with pytest.raises(ParamError, match="this CPU has no bf16 instructions"):
        dev.autocast_dtype("bf16", CPU)


def test_the_probe_times_real_products_and_leaves_the_global_rng_alone():
    before = torch.random.get_rng_state()
    ratio = dev.cpu_bf16_speedup.__wrapped__(rows=16, width=24, reps=1)
    assert math.isfinite(ratio) and ratio > 0
    assert torch.equal(torch.random.get_rng_state(), before)
