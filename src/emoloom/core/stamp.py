"""Contract-first provenance: git commit, config hash and an environment stamp for every checkpoint and metrics file."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata

import torch

LIBRARIES = ("torch", "transformers", "peft", "numpy", "scikit-learn", "dvc")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def config_hash(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def environment_stamp() -> dict:
    """Device, driver/CUDA, CPU and library versions."""
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    stamp = {"python": platform.python_version(), "platform": platform.platform(), "cpu": platform.processor() or
             platform.machine(), "torch_threads": torch.get_num_threads(), "libraries": versions,
             "cuda": torch.version.cuda if torch.cuda.is_available() else None}
    if torch.cuda.is_available():
        stamp.update(gpu=torch.cuda.get_device_name(0), cudnn=torch.backends.cudnn.version(),
                     driver=_nvidia_driver())
    return stamp


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None
