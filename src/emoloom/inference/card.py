"""The model card (README.md) of an exported model: what it is, what it was trained on and under which terms, how it
scores beside the baselines, how to use it and how to reproduce it."""

from __future__ import annotations

from pathlib import Path

from emoloom.core.io import read_json
from emoloom.core.labels import LABELS

# The corpora and resources an EmoLoom run is trained from (docs/data.md), with their licences as the origins state
# them. The NRC VAD lexicon gives the weak VAD targets, so its terms travel with every model trained on them.
TRAINING_DATA = [
    ("GoEmotions (simplified), train split", "google-research/goemotions (Reddit comments)", "Apache-2.0 (HF card)"),
    ("EmpatheticDialogues, situation-level train split", "facebookresearch/EmpatheticDialogues", "CC BY-NC 4.0"),
    ("NRC VAD Lexicon v1 (weak VAD targets and rationale cue words)", "Saif M. Mohammad, NRC Canada",
     "NRC terms: non-commercial research only, no redistribution of the lexicon"),
    ("WordNet 3.0 antonym pairs (Valence-Flip augmentation)", "Princeton WordNet 3.0", "WordNet 3.0 licence"),
]
INTENDED_USE = (
    "Research on emotion recognition and affective text analysis: multi-label emotion (28 GoEmotions labels) and "
    "valence/arousal/dominance estimates for short English messages, as one line of JSON. Non-commercial use only: "
    "EmpatheticDialogues (CC BY-NC) and the NRC VAD lexicon (non-commercial research terms) are part of its training, "
    "and the lexicon's terms travel with artefacts derived from it.")
LIMITS = (
    "A 135M-parameter model fine-tuned for minutes on a CPU: its labels are far from state of the art (compare the "
    "TF-IDF baseline below) and its VAD is trained on lexicon-derived weak targets, not human ratings (EmoBank "
    "Pearson r is the honest check, docs/usage.md). English Reddit and crowd-sourced dialogue text only; not for "
    "decisions about people, clinical use or surveillance.")


def _metrics_rows(eval_metrics: dict | None) -> str:
    if not eval_metrics:
        return "No dev evaluation was found beside the bundle (metrics/eval_dev/<run>.json); run `dvc repro eval_dev`.\n"
    gen, heads, base = eval_metrics["generated"], eval_metrics.get("heads", {}), eval_metrics.get("baselines", {})
    strict = gen["strict"]
    rows = [("ParseOK", gen["parse_ok"], "—"),
            ("macro-F1 (strict, generated)", strict["labels"]["macro_f1"],
             f"TF-IDF+LR {base.get('labels', {}).get('tfidf_lr', {}).get('macro_f1', '—')}, always-neutral "
             f"{base.get('labels', {}).get('always_neutral', {}).get('macro_f1', '—')}"),
            ("1−RMSE VAD (strict, generated)", strict["vad"]["one_minus_rmse"],
             f"constant mean {base.get('vad', {}).get('constant_mean', {}).get('one_minus_rmse', '—')}"),
            ("ρ̄ VAD (strict, generated)", strict["vad"]["rho_mean"], "—"),
            ("macro-F1 (heads, all dev rows)", heads.get("paper", {}).get("labels", {}).get("macro_f1", "—"), "—")]
    lines = ["| metric | this model | baselines, same rows |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {ref} |" for name, value, ref in rows]
    return (f"On {gen['n']} decoded rows of its mixture's dev split (heads: {heads.get('n', '—')} rows), "
            f"from metrics/eval_dev/{eval_metrics.get('run')}.json:\n\n" + "\n".join(lines) + "\n")


def model_card(info: dict, eval_metrics: dict | None, prompt: dict) -> str:
    """README.md of an exported model from its bundle.json (`info`), its dev metrics and its prompt spec."""
    backbone = info.get("backbone_info") or {}
    run, commit = info["run"], info.get("git_commit") or "unknown"
    mixture = ":".join(str(v) for v in info["mixture"].values())
    data = "\n".join(f"| {name} | {origin} | {lic} |" for name, origin, lic in TRAINING_DATA)
    return f"""---
license: other
language: en
tags: [emotion-classification, vad, emoloom]
base_model: {backbone.get("name", "unknown")}
---
# EmoLoom emotion model `{run}`

A causal LM fine-tuned (LoRA, merged) to answer one line of JSON for a message: `{{"labels":[...],"vad":{{"v":..,
"a":..,"d":..}},"rationale":"..."}}`: one or more of the {len(LABELS)} GoEmotions labels, valence/arousal/dominance
in [0, 1], and the cue words that carry the emotion. Contract version `{info["prompt_version"]}`.

## Backbone
{backbone.get("name", "unknown")} ({backbone.get("parameters", "?")} parameters), from {backbone.get("source", "?")};
licence: {backbone.get("license", "see the backbone's own card")}.

## Training data (GoEmotions : EmpatheticDialogues = {mixture})
| data | origin | licence |
|---|---|---|
{data}

The NRC VAD lexicon's terms (non-commercial research, no redistribution) apply to this model as a derived artefact.

## Labels
{", ".join(LABELS)}. EmpatheticDialogues' 32 labels were mapped into this space with the project's
`emoloom/mappings` (docs/data.md); the Ekman-7 projection follows GoEmotions' ekman_mapping.json.

## Metrics
{_metrics_rows(eval_metrics)}
## Use
The prompt is in `emoloom_prompt.json`: the system text, then the user turn `{prompt["message_prefix"]}<text>`
(earlier dialogue turns, if any, go before it after a `{prompt["context_header"]}` line), through the tokenizer's chat
template with the generation prompt; greedy decoding, at most {prompt["max_new_tokens"]} new tokens, the answer is the
first complete JSON object. With the `emoloom` package, the bundle this was exported from gives the same answers:
`emoloom predict data/sft/{run}/model "text"`.

```python
import json
from transformers import AutoModelForCausalLM, AutoTokenizer
tok, lm = AutoTokenizer.from_pretrained("OUT"), AutoModelForCausalLM.from_pretrained("OUT")
spec = json.load(open("OUT/emoloom_prompt.json"))
messages = [{{"role": "system", "content": spec["system_prompt"]}},
            {{"role": "user", "content": spec["message_prefix"] + "thanks so much"}}]
ids = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
          add_special_tokens=False, return_tensors="pt").input_ids
out = lm.generate(ids, max_new_tokens=spec["max_new_tokens"], do_sample=False)
answer, _ = json.JSONDecoder().raw_decode(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
```

The multi-label and VAD heads (fast mode, no decoding) are in `emoloom_heads.safetensors` with
`emoloom_heads.json` (they read the mean last hidden state over the user turn).

## Intended use and limits
{INTENDED_USE}

{LIMITS}

## Reproduce
From a clone of the EmoLoom repository at commit `{commit}`: `make repro` (or `dvc repro eval_dev@{run}`), then
`emoloom export data/sft/{run}/model OUT`. Training config hash `{info.get("config_hash", "?")}`, weights sha1
`{info.get("weights_sha1", "?")}`.
"""


def eval_metrics_for(bundle: Path, run: str) -> dict | None:
    """metrics/eval_dev/<run>.json of the project that holds `bundle` (data/sft/<run>/model), if there is one."""
    for root in Path(bundle).resolve().parents:
        path = root / "metrics" / "eval_dev" / f"{run}.json"
        if path.is_file():
            return read_json(path)
    return None
