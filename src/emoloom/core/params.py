"""Read one section of params.yaml (each stage reads only its own keys, as listed in dvc.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from emoloom.core.errors import ParamError

PARAMS_FILE = Path(os.environ.get("EMOLOOM_PARAMS", "params.yaml"))


def load_params(path: str | os.PathLike = PARAMS_FILE) -> dict:
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def load_section(name: str, path: str | os.PathLike = PARAMS_FILE) -> dict:
    params = load_params(path)
    if name not in params:
        raise ParamError(f"{path}: no section '{name}' (sections: {', '.join(params)})")
    return params[name]
