"""The shared prompt prefix's KV cache in training: the frozen first layers' part once per run, the adapted layers'
part once per step.

With LoRA on the last layers only (`lora.last_layers`), the decoder layers below the first adapted one never change,
so the system prompt's keys and values there, and its hidden state entering the first adapted layer, are the same at
every step. `PrefixKV` computes them once (no gradient) and, per step, runs only the adapted layers over that hidden
state; the result is the cache `batching.prefix_forward` would give, with the same gradients
(tests/test_sft_data.py). With nothing frozen (full fine-tuning, LoRA on every layer) it steps aside.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from emoloom.modeling.batching import position_ids


def frozen_depth(lm: nn.Module) -> int:
    """How many leading decoder layers training cannot change: those before the first one with a trainable parameter
    (0 when the embeddings train, or when attention dropout makes a training forward random)."""
    if lm.get_input_embeddings().weight.requires_grad or (lm.training and getattr(lm.config, "attention_dropout", 0)):
        return 0
    layers = lm.get_decoder().layers
    return next((i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())), len(layers))


@contextmanager
def layers_from(lm: nn.Module, start: int):
    """Run only decoder layers `start`.. (then the final norm): HF decoders loop over `layers[:num_hidden_layers]`,
    reading `config.layer_types` by position, so all three are cut for the duration. Each layer keeps its own index
    into the cache, so a full-depth cache gets entries `start`.. filled."""
    decoder, config = lm.get_decoder(), lm.config
    saved = decoder.layers, config.num_hidden_layers, getattr(config, "layer_types", None)
    decoder.layers, config.num_hidden_layers = saved[0][start:], saved[1] - start
    if saved[2] is not None:
        config.layer_types = saved[2][start:]
    try:
        yield
    finally:
        decoder.layers, config.num_hidden_layers = saved[0], saved[1]
        if saved[2] is not None:
            config.layer_types = saved[2]


class PrefixKV:
    """The prefix cache of one model for training forwards (`EmoModel.forward`); kept between steps: the frozen
    layers' keys and values and the hidden state that enters the first adapted layer, for the last prefix seen."""

    def __init__(self, keep: bool = True):
        self.keep = keep                   # False: no cache, the whole prefix per forward (the reference path)
        self.key: tuple | None = None
        self.frozen = None                 # the prefix's cache; only its first `start` layers are used
        self.hidden: torch.Tensor | None = None

    def __call__(self, lm: nn.Module, prefix_ids: torch.Tensor | None):
        """The prefix's KV cache at every layer (frozen part kept, adapted part computed now, with gradients), or
        None when there is no prefix or nothing is frozen (`lm_forward` then runs the prefix itself)."""
        start = frozen_depth(lm) if self.keep else 0
        if prefix_ids is None or not prefix_ids.numel() or not start:
            return None
        from transformers import DynamicCache

        x = prefix_ids.to(lm.device)[None]
        mask = torch.ones_like(x)
        amp = torch.get_autocast_dtype(lm.device.type) if torch.is_autocast_enabled(lm.device.type) else None
        key = (tuple(prefix_ids.tolist()), start, lm.dtype, lm.device, amp)
        if key != self.key:
            with torch.no_grad():
                out = lm(input_ids=x, attention_mask=mask, position_ids=position_ids(mask), use_cache=True,
                         output_hidden_states=True, logits_to_keep=1)
            self.key, self.frozen, self.hidden = key, out.cache, out.hidden_states[start]
        cache = DynamicCache(config=lm.config)
        if start < lm.config.num_hidden_layers:
            with layers_from(lm, start):
                lm.get_decoder()(inputs_embeds=self.hidden, attention_mask=mask, position_ids=position_ids(mask),
                                 cache=cache, use_cache=True)
        cache.layers[:start] = self.frozen.layers[:start]     # shared: `lm_forward` copies a cache before using it
        return cache
