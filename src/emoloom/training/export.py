"""The end of a run: the model bundle (selected weights + provenance) and the run's metrics."""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from emoloom.core.contract import PROMPT_VERSION
from emoloom.core.io import atomic_dir, read_json, sha1_file, write_json
from emoloom.core.labels import LABELS
from emoloom.core.stamp import environment_stamp, git_commit
from emoloom.modeling.model import EmoModel, LoraSettings
from emoloom.training.config import LossWeights, RunPaths, SFTConfig
from emoloom.training.state import RunState


def write_bundle(bundle: Path, weights: dict[str, torch.Tensor], model: EmoModel, info: dict) -> str:
    """Write trainable.safetensors (the given weights + the heads' buffers) and bundle.json atomically; the weights'
    sha1."""
    chosen = {**weights, **{f"heads.{n}": b.detach().cpu() for n, b in model.heads.named_buffers()}}
    with atomic_dir(bundle) as tmp:
        save_file({n: t.contiguous() for n, t in sorted(chosen.items())}, str(tmp / "trainable.safetensors"))
        weights_sha1 = sha1_file(tmp / "trainable.safetensors")
        write_json(tmp / "bundle.json", {**info, "weights_sha1": weights_sha1, "git_commit": git_commit(),
                                         "environment": environment_stamp()})
    return weights_sha1


def export_run(state: RunState, cfg: SFTConfig, weights: LossWeights, lora: LoraSettings, model: EmoModel,
               chosen: dict[str, torch.Tensor], paths: RunPaths, run_name: str, mixture: dict[str, float],
               config_hash: str) -> dict:
    """Export the bundle with the `chosen` weights (the best checkpoint's); return {"metrics", "timing"} of the run."""
    best = state.best
    info = {"run": run_name, "mixture": mixture, "prompt_version": PROMPT_VERSION, "labels": list(LABELS),
            # relative to the bundle directory, so the bundle loads from any working directory (load_bundle)
            "backbone": os.path.relpath(paths.backbone.resolve(), (paths.out / "model").resolve()),
            "backbone_info": _read_json_or_none(paths.backbone / "backbone.json"),
            "tokenizer_sha1": sha1_file(paths.backbone / "tokenizer.json"), "full_finetune": cfg.full_finetune,
            "lora": asdict(lora), "config": asdict(cfg), "loss": asdict(weights), "config_hash": config_hash}
    selected_step = best.step if best else state.step
    weights_sha1 = write_bundle(paths.out / "model", chosen, model,
                                {**info, "selected_step": selected_step})
    last = state.history.train[-cfg.pass_steps:]
    final_losses = {t: statistics.fmean(r[f"loss_{t}"] for r in last) for t in weights.active} if last else {}
    metrics = {"run": run_name, "steps": state.step, "stop": state.stop or "max_steps",
               "weights_sha1": weights_sha1, "selected_step": best.step if best else None,
               "final_train_loss": {t: round(v, 4) for t, v in final_losses.items()},
               "dev": dict(best.eval) if best else {},
               "oom_heals": sum(d["event"] == "oom_self_heal" for d in state.history.decisions)}
    tokens = sum(r["tokens"] for r in state.history.train)
    timing = {"train_seconds": round(state.elapsed, 1), "tokens": tokens,
              "tokens_per_s": round(tokens / max(state.elapsed, 1e-9), 1)}
    return {"metrics": metrics, "timing": timing}


def _read_json_or_none(path: Path):
    return read_json(path) if path.exists() else None
