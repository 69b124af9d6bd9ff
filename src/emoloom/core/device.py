"""Where and how tensors run: the device, the autocast dtype, and seeding for reproducible runs."""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emoloom.core.errors import ParamError

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamError("device: cuda requested but no CUDA device is available")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype (None = fp32) and why: bf16 on CUDA; on a CPU with bf16 instructions when asked (`bf16`),
    or under `auto` only where they run a training step's products faster than fp32 (`cpu_bf16_speedup`)."""
    if precision == "fp32":
        return None, "fp32 asked for"
    if device.type == "cuda":
        return torch.bfloat16, "bf16 on CUDA"
    cpu_bf16 = torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") and _has_cpu_flag("avx512_bf16")
    if precision == "bf16":
        if not cpu_bf16:
            raise ParamError("precision: bf16 asked for, but this CPU has no bf16 instructions")
        return torch.bfloat16, "bf16 asked for"
    if not cpu_bf16:
        return None, "auto: this CPU has no bf16 instructions"
    speedup = cpu_bf16_speedup()
    return (torch.bfloat16 if speedup > 1.0 else None,
            f"auto: bf16 autocast ran a training-shaped product {speedup:.2f}x as fast as fp32 on this CPU")


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup(rows: int = 256, width: int = 576, reps: int = 8) -> float:
    """fp32 time / bf16-autocast time of a linear layer's forward and backward ((rows, width) through SmolLM2-135M's
    MLP weight, (8/3 width, width)), the best of 5 timings each at the current thread count; ~1 s. Below 1 where
    the bf16 instructions have no fast matrix unit behind them: 0.62 on an Intel Xeon without AMX, where a training
    step ran 1.35-1.57x faster in fp32 (docs/training.md, "Precision"). Its own generator: the global RNG is left
    as it was."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, width, generator=g, requires_grad=True)
    w = torch.randn(width * 8 // 3, width, generator=g, requires_grad=True)

    def product(amp: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = F.linear(x, w)
        y.float().sum().backward()

    def best(amp: bool) -> float:
        product(amp)                                            # warm-up: kernel selection, allocations
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(reps):
                product(amp)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(False) / best(True)


def _has_cpu_flag(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
