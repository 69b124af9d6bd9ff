"""`emoloom export`: a bundle as a plain Hugging Face model directory that needs only `transformers` to load.

OUT/ holds the LM with the LoRA adapters merged (config.json, model.safetensors), the tokenizer with its chat
template, emoloom_prompt.json (the frozen prompt text and decoding rule), emoloom_heads.safetensors + .json (the
heads), and README.md (the model card, emoloom.inference.card)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from emoloom.core.contract import CONTEXT_HEADER, MESSAGE_PREFIX, PROMPT_VERSION, SYSTEM_PROMPT
from emoloom.core.io import atomic_dir, write_json, write_text
from emoloom.core.labels import LABELS
from emoloom.inference.card import eval_metrics_for, model_card
from emoloom.inference.predictor import EmotionModel


def prompt_spec(max_new_tokens: int) -> dict:
    """What a plain-transformers user needs to build the prompt and read the answer."""
    return {"prompt_version": PROMPT_VERSION, "system_prompt": SYSTEM_PROMPT, "message_prefix": MESSAGE_PREFIX,
            "context_header": CONTEXT_HEADER, "max_new_tokens": max_new_tokens, "decoding": "greedy",
            "answer": "the first complete JSON object of the generated text", "labels": list(LABELS),
            "chat_template": "the tokenizer's, add_generation_prompt=True; tokenize with add_special_tokens=False"}


def export_model(bundle: str | Path, out: str | Path) -> Path:
    """Write the export of `bundle` (a directory, or `best`) to `out` atomically; returns `out`."""
    model = EmotionModel.load(bundle)
    lm = model.model.lm if model.info["full_finetune"] else model.model.lm.merge_and_unload()
    heads = model.model.heads
    spec = prompt_spec(model.max_new_tokens)
    read_out = (f"decoder layer {heads.layer}'s output through the final norm (the forward may stop there)"
                if heads.layer else "the last hidden state")
    with atomic_dir(out) as tmp:
        lm.save_pretrained(tmp)
        model.tokenizer.save_pretrained(tmp)
        write_json(tmp / "emoloom_prompt.json", spec)
        save_file({k: v.detach().contiguous() for k, v in heads.state_dict().items()},
                  str(tmp / "emoloom_heads.safetensors"))
        write_json(tmp / "emoloom_heads.json", {
            "labels": list(LABELS), "hidden_size": heads.labels.in_features,
            "pooling": f"mean over the user turn (the prompt tokens after the system text) of {read_out}",
            "label_logits": "labels.weight @ ((pooled - feature_mean) / feature_scale) + labels.bias; p = sigmoid",
            "vad": "sigmoid(vad.weight @ ((pooled - feature_mean) / feature_scale) + vad.bias), order v, a, d",
            "decision": "labels with p >= 0.5, else the most likely one"})
        write_text(tmp / "README.md", model_card(model.info, eval_metrics_for(model.path, model.info["run"]), spec))
    return Path(out)
