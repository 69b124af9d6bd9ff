"""The generator: a causal LM (LoRA-adapted by default) plus a multi-label head and a VAD head on its pooled hidden
state. The heads give L_cls, L_reg, v(x) for L_flip, and the fast "heads" inference mode."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from tqdm import tqdm

from emoloom.core.config import option, validate
from emoloom.core.errors import DataError, MissingInputError, ParamError
from emoloom.core.labels import LABELS, NUM_LABELS
from emoloom.modeling.batching import (
    common_prefix,
    drop_pad_columns,
    left_pad,
    length_buckets,
    position_ids,
    prefix_forward,
    repeat_cache,
)
from emoloom.modeling.prefix_kv import PrefixKV


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
    `init_from_data` sets those statistics and starts both biases at the training priors (docs/training.md).
    `layer`: the decoder layer whose output (through the final norm) is pooled; 0 = the last."""

    def __init__(self, hidden: int, num_labels: int = NUM_LABELS, layer: int = 0):
        super().__init__()
        self.layer = layer
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


def lm_forward(lm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               prefix_ids: torch.Tensor | None = None, logits_to_keep: int = 1, cache=None, logits: bool = True):
    """The LM over left-padded rows that all begin with `prefix_ids`: the prefix runs once (batch 1) and every row
    attends to its KV cache, so a batch costs P + its rows' own tokens instead of rows x (P + own). With no prefix
    this is the plain forward. Gradients flow through the shared prefix as through per-row copies (the same losses
    and gradients, tests/test_sft_data.py). `cache`: the prefix's KV cache, computed earlier by the same weights
    (`batching.prefix_forward`, or `prefix_kv.PrefixKV` in training; left as it is); without it the prefix runs here.
    Returns the LM output (logits of the last positions, hidden states); with `logits=False`, the decoder's alone
    (hidden states, no LM head: under autocast the head would cast the whole tied vocabulary matrix every call)."""
    p = 0 if prefix_ids is None else prefix_ids.numel()
    if p:
        cache = repeat_cache(cache if cache is not None else prefix_forward(lm, prefix_ids.tolist()), input_ids.size(0))
        ones = torch.ones(input_ids.size(0), p, dtype=attention_mask.dtype, device=attention_mask.device)
        attention_mask = torch.cat([ones, attention_mask], 1)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)[:, p:],
                  cache=cache if p else None, use_cache=bool(p), output_hidden_states=True)
    return lm(**kwargs, logits_to_keep=logits_to_keep) if logits else lm.get_decoder()(**kwargs)


def check_heads_layer(depth: int, layer: int) -> None:
    """Refuse a heads layer (sft.train.heads_layer) that is not one of the backbone's `depth` decoder layers."""
    if not 0 <= layer <= depth:
        raise ParamError(f"sft.train.heads_layer: this backbone has {depth} decoder layers (0 = the last), got {layer}")


@contextmanager
def first_layers(lm: nn.Module, layer: int):
    """Run only the first `layer` decoder layers (then the final norm); 0 = all. HF decoders loop over
    `layers[:config.num_hidden_layers]`, so this costs `layer` / depth of a full forward."""
    depth = lm.config.num_hidden_layers
    check_heads_layer(depth, layer)
    lm.config.num_hidden_layers = layer or depth
    try:
        yield
    finally:
        lm.config.num_hidden_layers = depth


def layer_output(lm: nn.Module, hidden_states: tuple[torch.Tensor, ...], layer: int) -> torch.Tensor:
    """Decoder layer `layer`'s output through the final norm (0: the last, already normed), from a full forward's
    hidden states; what `first_layers(lm, layer)` returns as its last hidden state."""
    if layer in (0, len(hidden_states) - 1):
        return hidden_states[-1]
    return lm.get_decoder().norm(hidden_states[layer])


@torch.no_grad()
def prompt_features(lm: nn.Module, prompts: list[list[int]], starts: list[int], pad_id: int, batch_size: int = 16,
                    share_prefix: bool = True, layer: int = 0) -> torch.Tensor:
    """(N, hidden) fp32: each prompt's mean hidden state over its user turn (from `starts`) at the output of decoder
    layer `layer` through the final norm (0: the last), `lm` as it is now; what the heads read. The forward stops at
    that layer. Prompts run in batches of similar length; their shared prefix runs once and every batch attends to it.
    The features equal those of the plain forward of each whole prompt (up to rounding, tests/test_decoding.py)."""
    feats: list[torch.Tensor | None] = [None] * len(prompts)
    cached: tuple[tuple[int, ...], object] = ((), None)      # the last prefix and its KV cache: batches share it
    with first_layers(lm, layer):
        for rows in tqdm(length_buckets(prompts, batch_size), desc=f"features (layer {layer or 'last'})",
                         unit="batch", leave=False):
            chunk, own = [prompts[i] for i in rows], [starts[i] for i in rows]
            p = common_prefix(chunk, limit=min(own)) if share_prefix else 0
            ids, mask = left_pad([r[p:] for r in chunk], pad_id)
            pool = torch.zeros_like(mask)
            for k, (row, start) in enumerate(zip(chunk, own)):
                pool[k, mask.size(1) - (len(row) - start):] = 1
            prefix = tuple(chunk[0][:p])
            if p and prefix != cached[0]:
                cached = (prefix, prefix_forward(lm, list(prefix)))
            out = lm_forward(lm, ids.to(lm.device), mask.to(lm.device), torch.tensor(prefix, dtype=torch.long),
                             cache=cached[1], logits=False)
            for k, pooled in zip(rows, masked_mean(out.hidden_states[-1].float(), pool.to(lm.device)).cpu()):
                feats[k] = pooled
    return torch.stack(feats) if prompts else torch.empty(0, lm.config.hidden_size)


class EmoOutput(NamedTuple):
    logits: torch.Tensor          # (rows, positions, vocab) LM logits of the last positions
    label_logits: torch.Tensor    # (rows, labels)
    vad: torch.Tensor             # (rows, 3) in [0, 1]


class EmoModel(nn.Module):
    def __init__(self, lm: nn.Module, heads: Heads):
        super().__init__()
        self.lm, self.heads = lm, heads
        self.prefix_kv = PrefixKV()         # the frozen layers' part of the prefix cache, kept between forwards
        self.head_cast: tuple[tuple, torch.Tensor | None] = ((), None)   # (key, the frozen LM head's autocast copy)

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head over `hidden`. Under autocast a frozen, bias-free head's weight (here the tied vocabulary
        matrix, 49152 x 576) is cast once and kept, where autocast would cast it again at every call; the products
        are the same (autocast runs the same linear on the same low-precision operands)."""
        head = self.lm.get_output_embeddings()
        device = hidden.device.type
        if not torch.is_autocast_enabled(device) or head.weight.requires_grad or head.bias is not None:
            return head(hidden)
        dtype = torch.get_autocast_dtype(device)
        key = (head.weight.data_ptr(), head.weight._version, dtype)
        if self.head_cast[0] != key:
            self.head_cast = (key, head.weight.detach().to(dtype))
        return nn.functional.linear(hidden.to(dtype), self.head_cast[1])

    def forward(self, input_ids, attention_mask, pool_mask, logits_to_keep: int = 1, prefix_ids=None,
                logit_rows: int | None = None):
        """(LM logits of the last `logits_to_keep` positions of the first `logit_rows` rows (all by default), label
        logits, VAD in [0,1]) of rows after a shared prefix (`lm_forward`); the heads read the hidden states pooled over
        `pool_mask`. Rows past `logit_rows` (e.g. Valence-Flip twins) only feed the heads: with the heads below the
        last layer they run only up to the heads' layer (the same outputs and gradients, tests/test_sft_data.py).
        The prefix's frozen layers run once per model (`prefix_kv.PrefixKV`), its adapted layers once per call."""
        n, layer = input_ids.size(0) if logit_rows is None else logit_rows, self.heads.layer
        split = bool(layer) and n < input_ids.size(0)       # heads-only rows: a forward of their own, to `layer`
        rows = slice(0, n if split else None)
        mask, ids, pool = drop_pad_columns(attention_mask[rows], input_ids[rows], pool_mask[rows])
        cache = self.prefix_kv(self.lm, prefix_ids)
        out = lm_forward(self.lm, ids, mask, prefix_ids, cache=cache, logits=False)
        hidden = out.hidden_states[-1]                          # after the final norm: what the LM head reads
        logits = self.lm_head(hidden[:n, -logits_to_keep:])
        pooled = masked_mean(layer_output(self.lm, out.hidden_states, layer), pool)
        if split:
            mask, ids, pool = drop_pad_columns(attention_mask[n:], input_ids[n:], pool_mask[n:])
            with first_layers(self.lm, layer):
                pooled = torch.cat([pooled, masked_mean(lm_forward(self.lm, ids, mask, prefix_ids, cache=cache,
                                                                   logits=False).hidden_states[-1], pool)])
        label_logits, vad = self.heads(pooled.float())
        return EmoOutput(logits, label_logits, vad)

    @torch.no_grad()
    def predict_heads(self, prompts: list[list[int]], starts: list[int], pad_id: int, batch_size: int = 16,
                      share_prefix: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Heads mode: (label logits, VAD) of each prompt from its pooled user turn; no decoding."""
        dtype = next(self.heads.parameters()).dtype
        features = prompt_features(self.lm, prompts, starts, pad_id, batch_size, share_prefix, self.heads.layer)
        return self.heads(features.to(self.heads.feature_mean.device, dtype))


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


def backbone_dir(bundle_dir: Path, info: dict) -> Path:
    """The backbone directory a bundle was trained on: bundle.json stores it relative to the bundle directory."""
    path = Path(info["backbone"])
    path = path if path.is_absolute() else (Path(bundle_dir) / path).resolve()
    if not (path / "config.json").is_file():
        raise MissingInputError(f"{bundle_dir}: its backbone {path} (bundle.json \"backbone\": {info['backbone']!r}, "
                                f"relative to the bundle) is missing; run `dvc repro backbone` in the project that "
                                f"made the bundle, or keep the bundle inside it")
    return path


def load_bundle(bundle_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """(EmoModel in eval mode, tokenizer, bundle.json) of a checkpoint bundle written by `emoloom.training.loop`."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bundle_dir = Path(bundle_dir)
    info_path = bundle_dir / "bundle.json"
    if not info_path.is_file():
        raise MissingInputError(f"{bundle_dir} is not an EmoLoom model bundle (no bundle.json); train one with "
                                f"`dvc repro sft` or pass the model/ directory of a run")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("labels") != list(LABELS):
        raise DataError(f"{bundle_dir}: trained for another label space ({len(info.get('labels') or [])} labels)")
    backbone = backbone_dir(bundle_dir, info)
    lm = AutoModelForCausalLM.from_pretrained(backbone, dtype=dtype)
    if not info["full_finetune"]:
        settings = LoraSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["lora"].items()})
        lm = add_lora(lm, settings)
    model = EmoModel(lm, Heads(lm.config.hidden_size, layer=info["config"].get("heads_layer", 0)))
    weights = load_file(str(bundle_dir / "trainable.safetensors"))
    unknown = set(weights) - {n for n, _ in model.named_parameters()} - {n for n, _ in model.named_buffers()}
    if unknown:
        raise DataError(f"{bundle_dir}: weights for unknown parameters {sorted(unknown)[:3]}")
    if not {"heads.feature_mean", "heads.feature_scale"} <= set(weights):
        raise DataError(f"{bundle_dir}: the heads' feature statistics are missing (a bundle from before standardised "
                         f"heads); retrain it with `dvc repro sft`")
    model.load_state_dict(weights, strict=False)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    return model.to(device=device, dtype=dtype).eval(), tokenizer, info
