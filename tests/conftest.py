"""Shared fixtures: the real raw-data root and a small real subset of it (made in a temp dir, never committed)."""

from __future__ import annotations

import ast
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from emoloom.core.contract import build_prompt, build_target
from emoloom.core.io import read_jsonl, write_jsonl
from emoloom.data.convert import convert_file
from emoloom.data.corpora import ReadOptions
from emoloom.data.mixing import build_mixture
from emoloom.data.weak_vad import WeakVadConfig
from emoloom.modeling.model import LoraSettings
from emoloom.modeling.token_lexicon import lexical_tokens
from emoloom.modeling.verifier import AppraisalVerifier, tokenizer_sha1
from emoloom.training.config import LossWeights, RunPaths, SFTConfig
from emoloom.training.loop import train

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path, package: str | None) -> set[str]:
    """Dotted names of the `emoloom` modules (or attributes) a file imports anywhere, function bodies included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:                                  # relative: from the file's own package
                base = (package or "").split(".")[: len((package or "").split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return {n for n in names if n == "emoloom" or n.startswith("emoloom.")}


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
    from emoloom.data.lexicon import load_lexicon
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
    from emoloom.modeling.backbones import DEFAULT_BACKBONE, convert_backbone

    out = tmp_path_factory.mktemp("smollm2") / "backbone"
    convert_backbone(DEFAULT_BACKBONE, out)
    return out


# ---------------------------------------------------------------- a tiny SFT run (wiring tests of training, evaluation, screening)

MIX = {"goemotions": 50.0, "empathetic": 50.0}
TINY_CFG = SFTConfig(max_steps=6, micro_batch=2, grad_accum=2, pass_steps=3, eval_rows=4, eval_batch=4,
                     max_new_tokens=6, checkpoint_every=2, max_len=512, min_max_len=128, precision="fp32",
                     device="cpu", max_train_examples=40, lr=1e-3, head_lr=1e-2)
TINY_LORA = LoraSettings(r=4, alpha=8, dropout=0.1)


def records_from(small_raw_root: Path, tmp: Path, nrc) -> tuple[list[dict], list[dict]]:
    """Real rows of the small subset, converted with weak VAD and mixed 50:50."""
    pools = []
    for rel, fmt in (("goemotions/train.tsv", "goemotions"),
                     ("empatheticdialogues/situation_level/train.csv", "empathetic-situations")):
        out = tmp / f"{fmt}.jsonl"
        convert_file(small_raw_root / rel, out, fmt, "train",
                     ReadOptions(ed_labels=small_raw_root / "empatheticdialogues/labels.txt"), nrc, WeakVadConfig())
        pools.append([r for r in read_jsonl(out) if r["vad"] is not None][:60])
    return build_mixture(pools[0], pools[1], 50, 50, seed=1, dev_frac=0.1)


@pytest.fixture(scope="session")
def tiny_run(small_raw_root, nrc, tmp_path_factory):
    """Inputs of a tiny SFT run: real records, a word-level tokenizer and a random 2-layer Llama, a verifier."""
    tmp = tmp_path_factory.mktemp("tiny_sft")
    train_rows, dev_rows = records_from(small_raw_root, tmp, nrc)
    write_jsonl(tmp / "train.jsonl", train_rows)
    write_jsonl(tmp / "dev.jsonl", dev_rows)
    prompts = [build_prompt("x", ["y"], None), "assistant system user"]
    tokenizer = word_tokenizer(vocabulary_texts(train_rows + dev_rows) + prompts, chat=True)
    backbone = tmp / "backbone"
    tokenizer.save_pretrained(backbone)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(backbone)
    ids, _ = lexical_tokens(tokenizer, nrc)
    verifier = AppraisalVerifier(ids, tokenizer_sha1(tokenizer))
    torch.nn.init.normal_(verifier.net.weight, std=0.5)
    verifier.save(tmp / "verifier.pt")
    (tmp / "antonyms.tsv").write_text((small_raw_root / "antonyms/wordnet30_antonym_pairs.tsv").read_text())
    return tmp


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, nrc) -> Path:
    """The model bundle of one tiny SFT run (random 2-layer Llama + LoRA + heads): for evaluation and usage wiring."""
    run_tiny(tiny_run, "for_eval", nrc)
    return tiny_run / "for_eval/model"


def paths_for(tmp: Path, out: str) -> RunPaths:
    return RunPaths(train=tmp / "train.jsonl", dev=tmp / "dev.jsonl", backbone=tmp / "backbone",
                    verifier=tmp / "verifier.pt", antonyms=tmp / "antonyms.tsv", out=tmp / out,
                    plots=tmp / out / "plots")


def run_tiny(tmp: Path, out: str, nrc, cfg: SFTConfig = TINY_CFG, weights: LossWeights = LossWeights()) -> dict:
    return train(cfg, weights, TINY_LORA, paths_for(tmp, out), MIX, nrc, out)
