"""Shared fixtures: the real raw-data root and a small real subset of it (made in a temp dir, never committed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import re

import pytest
import yaml
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from emoloom.contract import build_target

REPO = Path(__file__).resolve().parents[1]


def real_raw_root() -> Path:
    configured = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["raw_root"]
    root = Path(os.environ.get("EMOLOOM_RAW_ROOT") or configured)
    return root if root.is_absolute() else (REPO / root).resolve()


@pytest.fixture(scope="session")
def raw_root() -> Path:
    root = real_raw_root()
    if not (root / "goemotions" / "train.tsv").is_file():
        pytest.fail(f"raw data not found at {root}: set EMOLOOM_RAW_ROOT or data.raw_root (docs/data.md)")
    return root


# relative path -> lines kept (header included); lexica and label lists are copied whole.
SUBSET = {
    "goemotions/train.tsv": 600, "goemotions/dev.tsv": 200,
    "empatheticdialogues/situation_level/train.csv": 500, "empatheticdialogues/situation_level/valid.csv": 150,
    "empatheticdialogues/utterance_level/valid.csv": 200,
    "dailydialog/convlab3_unified/dailydialog_train.jsonl": 60,
    "dailydialog/convlab3_unified/dailydialog_validation.jsonl": 30,
    "emobank/emobank.csv": 200,
}
WHOLE = ["goemotions/emotions.txt", "goemotions/ekman_mapping.json", "empatheticdialogues/labels.txt",
         "nrc_vad/NRC-VAD-Lexicon.txt", "warriner2013/Ratings_Warriner_et_al.csv",
         "antonyms/wordnet30_antonym_pairs.tsv"]


@pytest.fixture(scope="session")
def small_raw_root(raw_root, tmp_path_factory) -> Path:
    """The first lines of every real raw file, in the raw layout."""
    root = tmp_path_factory.mktemp("raw")
    for rel, n in SUBSET.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        with open(raw_root / rel, encoding="utf-8", newline="") as src:
            lines = [line for _, line in zip(range(n), src)]
        (root / rel).write_text("".join(lines), encoding="utf-8", newline="")
    for rel in WHOLE:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw_root / rel, root / rel)
    return root


@pytest.fixture(scope="session")
def nrc(raw_root):
    from emoloom.lexicon import load_lexicon
    return load_lexicon("nrc_vad", raw_root)


# ---------------------------------------------------------------- tiny word-level tokenizers for wiring tests

WORD = re.compile(r"\w+|[^\w\s]+")       # what pre_tokenizers.Whitespace splits on
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|> {{ m.content }} </s> {% endfor %}<|assistant|>"


def vocabulary_texts(records) -> list[str]:
    """The texts and gold answers of records: what a test tokenizer must cover."""
    return [r["text"] for r in records] + [build_target(r["labels"], r["vad"], r["vad_cues"]) for r in records]


def word_tokenizer(texts, chat: bool = False) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer whose vocabulary is every word of `texts` (with a chat template, an eos
    and role tokens when `chat`)."""
    special = ["<unk>", "<pad>"] + (["</s>", "<|system|>", "<|user|>", "<|assistant|>"] if chat else [])
    words = [w for text in texts for w in WORD.findall(text.lower())]
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*special, *words]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if chat:
        tok.add_special_tokens(special[2:])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="</s>" if chat else None)
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The embedded SmolLM2-135M-Instruct converted once per session into a plain HF directory."""
    from emoloom.backbones import DEFAULT_BACKBONE, convert_backbone

    out = tmp_path_factory.mktemp("smollm2") / "backbone"
    convert_backbone(DEFAULT_BACKBONE, out)
    return out
