"""Everything an SFT run needs before its first step: checked inputs, examples, the model with its heads, the optimizer.

The order of the calls in `emoloom.training.loop.train` fixes the order random numbers are drawn, so the same seed
gives the same weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from emoloom.core.errors import DataError, MissingInputError, ParamError
from emoloom.core.io import read_jsonl
from emoloom.data.flip import flip_text, load_antonyms
from emoloom.modeling.model import EmoModel, Heads, LoraSettings, add_lora, prompt_features
from emoloom.modeling.token_lexicon import lexical_tokens
from emoloom.modeling.verifier import AppraisalVerifier, prototype_targets
from emoloom.training.config import RunPaths, SFTConfig
from emoloom.training.sft_data import SFTExample, encode

EMPTY_RECORD = {"id": "x", "source": "x", "text": "", "labels": [], "vad": {"v": 0, "a": 0, "d": 0}}


def check_inputs(paths: RunPaths, run_name: str) -> None:
    for name, path in paths.inputs().items():
        if not path.exists():
            raise MissingInputError(f"{run_name}: {name} input {path} is missing (run its stage first)")


def check_max_len(cfg: SFTConfig, tokenizer) -> None:
    prompt_floor = len(encode(EMPTY_RECORD, tokenizer))
    if cfg.max_len < prompt_floor:
        raise ParamError(f"sft.train.max_len: {cfg.max_len} is below the prompt + empty answer length "
                         f"({prompt_floor} tokens)")


@dataclass
class TrainingData:
    examples: dict[str, list[SFTExample]]    # source -> its training examples (file order)
    dev: list[dict]                          # the dev records scored during training
    dev_examples: list[SFTExample]
    lexical_ids: torch.Tensor                # (N,) vocabulary tokens that are lexicon words (L_vad, L_app)
    lexical_vad: torch.Tensor                # (N, 3) their lexicon VAD


def build_examples(records: list[dict], tokenizer, cfg: SFTConfig, antonyms: dict[str, str],
                   rng: random.Random) -> list[SFTExample]:
    """Encode records; a share flip_prob of those with a polar antonym bring their flipped twin."""
    examples = []
    for rec in records:
        flipped = flip_text(rec["text"], antonyms) if rng.random() < cfg.flip_prob else None
        ex = encode(rec, tokenizer, flipped)
        ex.text_ids = tokenizer(rec["text"], add_special_tokens=False).input_ids
        ex.appraisal, ex.appraisal_mask = (list(map(float, t)) for t in prototype_targets(rec["labels"]))
        examples.append(ex)
    return examples


def load_training_data(cfg: SFTConfig, paths: RunPaths, tokenizer, lexicon, mixture: dict[str, float],
                       run_name: str, device: torch.device) -> TrainingData:
    """Read the mixture (at most max_train_examples per source), encode it and the dev rows, build the token tables."""
    rng = random.Random(cfg.seed)
    antonyms = load_antonyms(paths.antonyms, lexicon)
    by_source: dict[str, list[dict]] = {}
    for rec in read_jsonl(paths.train):
        if len(by_source.setdefault(rec["source"], [])) < cfg.max_train_examples:
            by_source[rec["source"]].append(rec)
    missing = [s for s, w in mixture.items() if w > 0 and s not in by_source]
    if missing:
        raise DataError(f"{run_name}: mixture sources {missing} have no rows in {paths.train}")
    examples = {s: build_examples(recs, tokenizer, cfg, antonyms, rng) for s, recs in by_source.items()}
    dev = list(read_jsonl(paths.dev))[:cfg.eval_rows]
    dev_examples = build_examples(dev, tokenizer, SFTConfig(flip_prob=0.0), antonyms, rng)
    ids, vad = lexical_tokens(tokenizer, lexicon)
    return TrainingData(examples, dev, dev_examples, torch.tensor(ids, dtype=torch.long, device=device), vad.to(device))


def attention_kernel(name: str, device: torch.device) -> str:
    """sft.train.attention resolved: "auto" is eager on CPU, where the training step's attention shapes (a few rows
    of ~100 tokens over a ~160-token shared prefix) run faster unfused than in sdpa's CPU kernel, and sdpa elsewhere."""
    return ("eager" if device.type == "cpu" else "sdpa") if name == "auto" else name


def build_model(backbone: Path, cfg: SFTConfig, lora: LoraSettings, device: torch.device) -> EmoModel:
    """The backbone (LoRA-adapted unless full fine-tuning) with fresh heads, on `device`."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(backbone, dtype=torch.float32,
                                              attn_implementation=attention_kernel(cfg.attention, device))
    if cfg.full_finetune:
        lm.requires_grad_(True)
    else:
        lm = add_lora(lm, lora)
    if cfg.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return EmoModel(lm, Heads(lm.config.hidden_size, layer=cfg.heads_layer)).to(device)


def example_features(model: EmoModel, examples: list[SFTExample], cfg: SFTConfig,
                     pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pooled features the model computes now for the examples' prompts (what the heads read), their labels, VAD."""
    model.eval()
    features = prompt_features(model.lm, [ex.prompt_ids for ex in examples], [ex.user_start for ex in examples],
                               pad_id, cfg.eval_batch, layer=model.heads.layer)
    return features, torch.tensor([ex.labels for ex in examples]), torch.tensor([ex.vad for ex in examples])


def init_heads(model: EmoModel, examples: list[SFTExample], cfg: SFTConfig, pad_id: int) -> None:
    """Standardise the heads' input and set their prior biases from a seeded sample of training prompts."""
    sample = random.Random(cfg.seed).sample(examples, min(cfg.head_init_rows, len(examples)))
    features, labels, vad = example_features(model, sample, cfg, pad_id)
    model.heads.init_from_data(features.to(model.heads.feature_mean.device), labels, vad)


def make_optimizer(model: EmoModel, cfg: SFTConfig) -> torch.optim.AdamW:
    """AdamW with two groups: the LM's trainable weights at `lr`, the heads at `head_lr` (each group keeps its peak)."""
    lm_params = [p for p in model.lm.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": lm_params, "lr": cfg.lr, "peak": cfg.lr},
                              {"params": list(model.heads.parameters()), "lr": cfg.head_lr, "peak": cfg.head_lr}],
                             betas=cfg.betas, weight_decay=cfg.weight_decay)


def load_verifier(paths: RunPaths, tokenizer, device: torch.device) -> AppraisalVerifier:
    return AppraisalVerifier.load(paths.verifier, tokenizer).to(device).requires_grad_(False)
