"""The generator: a causal LM (LoRA-adapted by default) plus a multi-label head and a VAD head on its pooled hidden
state. The heads give L_cls, L_reg, v(x) for L_flip, and the fast "heads" inference mode."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from emoloom.core.config import option, validate
from emoloom.core.labels import LABELS, NUM_LABELS
from emoloom.modeling.batching import left_pad, position_ids


@dataclass
class LoraSettings:
    """The LoRA adapters (params.yaml `lora`)."""
    r: int = option(16, "LoRA rank", ge=1)
    alpha: int = option(32, "LoRA scaling numerator (scale = alpha / r)", gt=0)
    dropout: float = option(0.05, "dropout on the LoRA input", ge=0, lt=1)
    target_modules: tuple[str, ...] = option(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"), "the projections that get adapters")
    last_layers: int = option(0, "adapt only the last N decoder layers (0 = all); fewer = faster backward on CPU",
                              ge=0)

    def __post_init__(self) -> None:
        validate(self, "lora")


class Heads(nn.Module):
    """Label and VAD heads on pooled hidden states, read as z-scores / sqrt(hidden) (train-set statistics held in
    buffers), so a head's logit scale neither depends on the backbone's raw activation scale nor grows with its width.
    `init_from_data` sets those statistics and starts both biases at the training priors (docs/training.md)."""

    def __init__(self, hidden: int, num_labels: int = NUM_LABELS):
        super().__init__()
        self.labels = nn.Linear(hidden, num_labels)
        self.vad = nn.Linear(hidden, 3)
        self.register_buffer("feature_mean", torch.zeros(hidden))
        self.register_buffer("feature_scale", torch.full((hidden,), float(hidden) ** 0.5))

    @torch.no_grad()
    def init_from_data(self, features: torch.Tensor, labels: torch.Tensor, vad: torch.Tensor) -> None:
        """Standardise with `features` (N, hidden); biases = logits of the label rates (N, K) and mean VAD (N, 3)."""
        self.feature_mean.copy_(features.mean(0))
        self.feature_scale.copy_(features.std(0).clamp_min(1e-6) * features.size(1) ** 0.5)
        self.labels.bias.copy_(torch.logit(labels.float().mean(0).clamp(1e-3, 1 - 1e-3)))
        self.vad.bias.copy_(torch.logit(vad.float().mean(0).clamp(1e-3, 1 - 1e-3)))

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (pooled - self.feature_mean) / self.feature_scale
        return self.labels(x), torch.sigmoid(self.vad(x))


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


@torch.no_grad()
def prompt_features(lm: nn.Module, prompts: list[list[int]], pad_id: int, batch_size: int = 16) -> torch.Tensor:
    """(N, hidden) fp32: each prompt's mean last-layer hidden state (what the heads read), `lm` as it is now."""
    feats = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = left_pad(prompts[i:i + batch_size], pad_id)
        out = lm(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                 position_ids=position_ids(mask).to(lm.device), output_hidden_states=True, use_cache=False,
                 logits_to_keep=1)
        feats.append(masked_mean(out.hidden_states[-1].float(), mask.to(lm.device)).cpu())
    return torch.cat(feats)


class EmoModel(nn.Module):
    def __init__(self, lm: nn.Module, heads: Heads):
        super().__init__()
        self.lm, self.heads = lm, heads

    def forward(self, input_ids, attention_mask, pool_mask, logits_to_keep: int = 1):
        """(LM logits of the last `logits_to_keep` positions, label logits, VAD in [0,1])."""
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                      output_hidden_states=True, use_cache=False, logits_to_keep=logits_to_keep)
        pooled = masked_mean(out.hidden_states[-1], pool_mask).float()
        label_logits, vad = self.heads(pooled)
        return out.logits, label_logits, vad

    def predict_heads(self, input_ids, attention_mask):
        """Heads on prompt-only inputs (pooling over every real token): label logits and VAD."""
        _, label_logits, vad = self(input_ids, attention_mask, attention_mask, logits_to_keep=1)
        return label_logits, vad


def heads_decisions(label_logits: torch.Tensor, vad: torch.Tensor) -> list[dict]:
    """The heads mode's answers: labels with p >= 0.5 (the most likely one when none passes), VAD from the VAD head."""
    out = []
    for p, v in zip(torch.sigmoid(label_logits.float()).cpu(), vad.float().cpu()):
        chosen = [LABELS[k] for k in (p >= 0.5).nonzero().flatten().tolist()] or [LABELS[int(p.argmax())]]
        out.append({"labels": chosen, "vad": {k: round(float(x), 4) for k, x in zip("vad", v)}})
    return out


def add_lora(lm: nn.Module, settings: LoraSettings) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    n_layers = lm.config.num_hidden_layers
    layers = list(range(n_layers - settings.last_layers, n_layers)) if settings.last_layers else None
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target_modules), layers_to_transform=layers, bias="none")
    return get_peft_model(lm, config)


def trainable_state(model: EmoModel) -> dict[str, torch.Tensor]:
    """The parameters that training changes (LoRA + heads, or everything for full fine-tuning), by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_bundle(bundle_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """(EmoModel in eval mode, tokenizer, bundle.json) of a checkpoint bundle written by `emoloom.training.loop`."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bundle_dir = Path(bundle_dir)
    info_path = bundle_dir / "bundle.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{bundle_dir} is not an EmoLoom model bundle (no bundle.json); train one with "
                                f"`dvc repro sft` or pass the model/ directory of a run")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("labels") != list(LABELS):
        raise ValueError(f"{bundle_dir}: trained for another label space ({len(info.get('labels') or [])} labels)")
    lm = AutoModelForCausalLM.from_pretrained(info["backbone"], dtype=dtype)
    if not info["full_finetune"]:
        settings = LoraSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["lora"].items()})
        lm = add_lora(lm, settings)
    model = EmoModel(lm, Heads(lm.config.hidden_size))
    weights = load_file(str(bundle_dir / "trainable.safetensors"))
    unknown = set(weights) - {n for n, _ in model.named_parameters()} - {n for n, _ in model.named_buffers()}
    if unknown:
        raise ValueError(f"{bundle_dir}: weights for unknown parameters {sorted(unknown)[:3]}")
    if not {"heads.feature_mean", "heads.feature_scale"} <= set(weights):
        raise ValueError(f"{bundle_dir}: the heads' feature statistics are missing (a bundle from before standardised "
                         f"heads); retrain it with `dvc repro sft`")
    model.load_state_dict(weights, strict=False)
    tokenizer = AutoTokenizer.from_pretrained(info["backbone"])
    return model.to(device=device, dtype=dtype).eval(), tokenizer, info
