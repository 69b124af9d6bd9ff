"""The state of a run between steps, and everything that saves or restores it.

`RunState` is what the loop carries from step to step (and what a checkpoint holds besides the model, optimizer,
sampler and data streams); the helpers here are the only code that touches RNG state, checkpoint files and logs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emoloom.core.io import atomic_path, write_text

CHECKPOINT_FORMAT = 3


@dataclass
class Healing:
    """The settings OOM self-healing may change (max_len -128, grad_accum x2, micro_batch /2)."""
    max_len: int
    grad_accum: int
    micro_batch: int


@dataclass
class Best:
    """The best evaluated checkpoint so far (Algorithm 2, lines 8-9)."""
    S: float
    S_bar: float
    step: int
    eval: dict
    weights: dict[str, torch.Tensor]


@dataclass
class History:
    train: list[dict] = field(default_factory=list)       # one row per optimizer step (train_log.csv)
    dev: list[dict] = field(default_factory=list)         # one row per dev evaluation (dev_log.csv)
    decisions: list[dict] = field(default_factory=list)   # every decision of the loop (decisions.jsonl)

    def decide(self, step: int, event: str, **details) -> None:
        self.decisions.append({"step": step, "event": event, **details})


@dataclass
class RunState:
    heal: Healing
    ema: dict[str, torch.Tensor] | None                   # EMA of the trainable weights (None: ema_decay = 0)
    step: int = 0
    elapsed: float = 0.0                                  # training seconds so far (the budget's clock)
    best: Best | None = None
    scores: list[float] = field(default_factory=list)     # S of every dev evaluation
    pass_times: list[float] = field(default_factory=list)  # wall seconds of every pass (the ETA)
    pass_entropy: dict[str, list[float]] = field(default_factory=dict)   # source -> this pass's entropies
    stop: str | None = None                               # why the loop stopped early: "budget" or "early"
    features: dict[str, torch.Tensor] = field(default_factory=dict)   # example id -> its training forward's heads
                                                          # input, while the heads read frozen layers (refit reuses)
    history: History = field(default_factory=History)


def swap_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load `weights` into the named parameters; return what was there."""
    params = dict(model.named_parameters())
    backup = {name: params[name].detach().clone() for name in weights}
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return backup


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically (a kill mid-write leaves the previous one)."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)


def load_checkpoint(path: Path, config_hash: str) -> dict | None:
    """The checkpoint at `path` if it was written by this code for this config, else None."""
    if not path.exists():
        return None
    saved = torch.load(path, weights_only=False)
    if saved.get("format") != CHECKPOINT_FORMAT or saved.get("config_hash") != config_hash:
        return None
    return saved


def write_logs(plots: Path, history: History) -> None:
    """Train/dev logs as CSV (DVC plots data) and the decision log as JSON lines."""
    for name in ("train", "dev"):
        rows = getattr(history, name)
        if rows:
            cols = list(rows[0])
            write_text(plots / f"{name}_log.csv", "\n".join([",".join(cols)] + [
                ",".join(_cell(r.get(c)) for c in cols) for r in rows]) + "\n")
    write_text(plots / "decisions.jsonl", "".join(json.dumps(d) + "\n" for d in history.decisions))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)
