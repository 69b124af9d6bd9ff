"""What an SFT run is told: the loss weights (params `loss`), the loop's settings (params `sft.train`) and its files.

Every field has a help string and its allowed values (`emoloom.core.config`): `python stages/sft.py --help` prints
them as tables, and `from_section` validates params.yaml before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from emoloom.core.config import option, validate
from emoloom.core.device import DEVICES, PRECISIONS

LOSS_TERMS = ("lm", "cls", "reg", "vad", "app", "flip")
ATTENTIONS = ("auto", "eager", "sdpa")


@dataclass
class LossWeights:
    """The lambdas of the objective L = sum_t lambda_t L_t (params.yaml `loss.`; docs/training.md)."""
    lambda_lm: float = option(1.0, "LM cross-entropy on the answer tokens", ge=0)
    lambda_cls: float = option(1.0, "multi-label BCE of the label head", ge=0)
    lambda_reg: float = option(1.0, "squared error of the VAD head", ge=0)
    lambda_vad: float = option(1.0, "VAD-preserving: expected lexicon VAD of the rationale vs the target", ge=0)
    lambda_app: float = option(0.5, "appraisal-atom verifier on the expected answer tokens", ge=0)
    lambda_flip: float = option(0.4, "Valence-Flip symmetry of the VAD head", ge=0)

    def __post_init__(self) -> None:
        validate(self, "loss")

    def weight(self, term: str) -> float:
        return getattr(self, f"lambda_{term}")

    @property
    def active(self) -> tuple[str, ...]:
        """The terms with a weight > 0: only these are computed."""
        return tuple(t for t in LOSS_TERMS if self.weight(t) > 0)

    def combine(self, terms: dict[str, torch.Tensor | float]) -> torch.Tensor | float:
        """The weighted sum over the active terms (the one place the objective is put together)."""
        return sum(self.weight(t) * terms[t] for t in self.active)


@dataclass
class SFTConfig:
    """The SFT loop's settings (params.yaml `sft.train`; the seed comes from `sft.seeds`)."""
    seed: int = option(11, "seed for data order, sampler, dropout and init")
    max_steps: int = option(100, "optimizer steps T_max (cosine schedule, cooling)", ge=1)
    micro_batch: int = option(4, "examples per forward pass", ge=1)
    grad_accum: int = option(2, "micro-batches per optimizer step", ge=1)
    lr: float = option(2e-4, "peak learning rate of the LM parameters (LoRA or full)", gt=0)
    head_lr: float = option(1e-2, "peak learning rate of the label and VAD heads", gt=0)
    head_init_rows: int = option(128, "training prompts whose frozen features set the heads' standardisation and "
                                      "prior biases", ge=1)
    weight_decay: float = option(0.1, "AdamW weight decay", ge=0)
    betas: tuple[float, float] = option((0.9, 0.95), "AdamW betas")
    warmup_ratio: float = option(0.03, "share of steps with linear warmup before cosine", ge=0, le=1)
    clip: float = option(1.0, "gradient norm clip", gt=0)
    max_len: int = option(384, "longest prompt+answer in tokens; longer examples skipped", ge=1)
    min_max_len: int = option(256, "OOM self-healing never lowers max_len below this", ge=1)
    full_finetune: bool = option(False, "train every LM weight instead of LoRA")
    gradient_checkpointing: bool = option(False, "recompute activations in backward (turns share_prefix off)")
    share_prefix: bool = option(True, "run the prompts' common system text once per micro-batch (same losses and "
                                      "gradients as the plain forward, ~2.5x fewer tokens)")
    precision: str = option("auto", "auto: bf16 on CUDA, and on CPUs with avx512_bf16 where a probe runs bf16 "
                                    "products faster than fp32 (core.device.cpu_bf16_speedup); else fp32",
                            choices=PRECISIONS)
    attention: str = option("auto", "the training model's attention kernel: auto = eager on CPU (a step ~1.14x as "
                                    "fast as sdpa's at these small shapes, docs/training.md), sdpa elsewhere. The "
                                    "exported bundle is evaluated with the default (sdpa)",
                            choices=ATTENTIONS)
    ema_decay: float = option(0.9, "EMA of trainable weights for eval/export; 0 = off", ge=0, lt=1)
    label_token_weight: float = option(1.0, "weight of the labels-list tokens in L_lm (1: the plain mean over the "
                                            "answer tokens)", gt=0)
    vad_token_weight: float = option(1.0, "weight of the vad object's tokens in L_lm", gt=0)
    heads_layer: int = option(0, "the decoder layer whose output (through the final norm) the heads pool; 0 = the "
                                 "last. Below LoRA's first adapted layer they read the frozen backbone, and heads "
                                 "mode runs only that many layers", ge=0)
    heads_refit_rows: int = option(0, "at export, refit the heads on the features the exported weights compute for N "
                                      "seeded training prompts (in the run's precision) and tune a decision threshold per "
                                      "label (0: off)", ge=0)
    t0: float = option(1.0, "sampler temperature at step 0", gt=0)
    t1: float = option(0.1, "sampler temperature at the last step", gt=0)
    conf_alpha: float = option(0.9, "EMA factor of the sampler's confidence proxy", ge=0, le=1)
    flip_prob: float = option(0.5, "chance that an example brings its Valence-Flip twin", ge=0, le=1)
    max_train_examples: int = option(4000, "examples tokenised per source (file order is already a seeded shuffle)",
                                     ge=1)
    pass_steps: int = option(50, "steps per pass between dev evaluations (Algorithm 2)", ge=1)
    eval_rows: int = option(32, "dev rows decoded per evaluation", ge=1)
    eval_batch: int = option(16, "rows decoded together", ge=1)
    max_new_tokens: int = option(64, "decoding budget per answer", ge=1)
    eval_use_cache: bool = option(True, "cached greedy decoding for the in-training dev score (identical tokens in "
                                        "fp32)")
    budget_min: float = option(30.0, "training time budget in minutes (Algorithm 2)", gt=0)
    score_window: int = option(2, "evaluations averaged into the sliding score S-bar", ge=1)
    eta_window: int = option(3, "passes whose median duration gives the ETA", ge=1)
    delta: float = option(0.0, "improvement margin of the early-stop rule")
    beta: float = option(1.0, "weight of 1-RMSE in S", ge=0)
    gamma: float = option(1.0, "weight of ParseOK in S", ge=0)
    rebalance: bool = option(True, "re-weight sources by entropy after each pass")
    checkpoint_every: int = option(10, "steps between resumable checkpoints", ge=1)
    device: str = option("auto", "where to train", choices=DEVICES)

    def __post_init__(self) -> None:
        validate(self, "sft.train")


@dataclass
class RunPaths:
    """The files of one run: its inputs (made by earlier stages) and where it writes."""
    train: Path                      # mixture train JSONL
    dev: Path                        # mixture dev JSONL
    backbone: Path                   # converted backbone directory
    verifier: Path                   # verifier.pt
    antonyms: Path                   # antonym pairs TSV
    out: Path                        # run directory: checkpoint.pt (resumable) and model/ (the bundle)
    plots: Path                      # train_log.csv, dev_log.csv, decisions.jsonl

    def inputs(self) -> dict[str, Path]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("out", "plots")}
