"""Where and how tensors run: the device, the autocast dtype, and seeding for reproducible runs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from emoloom.core.errors import ParamError

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamError("device: cuda requested but no CUDA device is available")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA and on CPUs that have bf16 instructions; None = fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16
    cpu_bf16 = torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") and _has_cpu_flag("avx512_bf16")
    if precision == "bf16" and not cpu_bf16:
        raise ParamError("precision: bf16 asked for, but this CPU has no bf16 instructions")
    return torch.bfloat16 if cpu_bf16 else None


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
