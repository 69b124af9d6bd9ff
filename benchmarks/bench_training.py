"""Training throughput of one SFT step, configurations side by side in one run (docs/training.md, "Levers").

Usage: .venv/bin/python benchmarks/bench_training.py [--threads 2] [--steps 4] [--mixture 20_80] [--precision bf16]
Needs `dvc repro mix backbone train_verifier`. Each configuration runs the real loss terms (emoloom.training.objective)
on the same seeded examples of the mixture: one warm-up step, then --steps timed optimizer steps of 16 examples.
Prints examples/s and computed tokens/s per configuration. benchmarks/bench_cuda.py runs `measure` on a GPU.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from emoloom.core.config import from_section  # noqa: E402  (after the path insert)
from emoloom.core.io import read_jsonl  # noqa: E402
from emoloom.core.tables import markdown_table  # noqa: E402
from emoloom.data.flip import load_antonyms  # noqa: E402
from emoloom.data.lexicon import load_lexicon  # noqa: E402
from emoloom.modeling.model import LoraSettings  # noqa: E402
from emoloom.modeling.prefix_kv import PrefixKV  # noqa: E402
from emoloom.modeling.token_lexicon import lexical_tokens  # noqa: E402
from emoloom.modeling.verifier import AppraisalVerifier  # noqa: E402
from emoloom.training.config import LossWeights, SFTConfig  # noqa: E402
from emoloom.training.objective import step_losses  # noqa: E402
from emoloom.training.setup import build_examples, build_model, make_optimizer  # noqa: E402
from emoloom.training.sft_data import collate  # noqa: E402

EXAMPLES_PER_STEP = 16
PARAMS_LORA = from_section(LoraSettings, yaml.safe_load((REPO / "params.yaml").read_text())["lora"], "lora")
WHOLE_PREFIX = "whole prefix per step"      # a name with this: the prefix's frozen layers are not kept between steps
CONFIGS = {   # name -> (SFTConfig changes, LoRA last_layers)
    "plain forward, micro 4, LoRA last 8": (dict(share_prefix=False, micro_batch=4), 8),
    f"shared prefix, micro 4, LoRA last 8, heads on layer 14, {WHOLE_PREFIX}": (dict(micro_batch=4, heads_layer=14), 8),
    "shared prefix, micro 4, LoRA last 8, heads on layer 14": (dict(micro_batch=4, heads_layer=14), 8),
    "shared prefix, micro 2, LoRA last 8, heads on layer 14": (dict(micro_batch=2, heads_layer=14), 8),
    "shared prefix, micro 4, LoRA last 8": (dict(micro_batch=4), 8),
    "shared prefix, micro 8, LoRA last 8": (dict(micro_batch=8), 8),
    "shared prefix, micro 8, LoRA last 8, heads on layer 14": (dict(micro_batch=8, heads_layer=14), 8),
    "shared prefix, micro 16, LoRA last 8": (dict(micro_batch=16), 8),
    "shared prefix, micro 8, LoRA last 16": (dict(micro_batch=8), 16),
    "shared prefix, micro 8, LoRA all 30": (dict(micro_batch=8), 0),
    "shared prefix, micro 8, full fine-tune": (dict(micro_batch=8, full_finetune=True), 0),
}


def load_examples(backbone: Path, train: Path, verifier: Path, raw: Path, n: int, cfg: SFTConfig):
    """(tokenizer, verifier, lexical token tables, n seeded examples of a mixture's train file) for `measure`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    lexicon = load_lexicon("nrc_vad", raw)
    frozen = AppraisalVerifier.load(verifier, tokenizer).requires_grad_(False)
    rows = random.Random(0).sample(list(read_jsonl(train)), n)
    antonyms = load_antonyms(raw / "antonyms/wordnet30_antonym_pairs.tsv", lexicon)
    examples = build_examples(rows, tokenizer, cfg, antonyms, random.Random(0))
    ids, vad = lexical_tokens(tokenizer, lexicon)
    return tokenizer, frozen, (torch.tensor(ids), vad), examples


def measure(cfg: SFTConfig, lora: LoraSettings, examples, tokenizer, verifier, tables, steps: int,
            backbone: Path = REPO / "data/backbone", device: torch.device = torch.device("cpu"),
            amp: torch.dtype | None = None, per_step: int = EXAMPLES_PER_STEP, keep_prefix: bool = True) -> dict:
    """examples/s, tokens/s and s/step over `steps` timed optimizer steps of `per_step` examples after one warm-up;
    on CUDA also the peak memory the steps allocated (GiB) and what was allocated before them (model, optimizer).
    `keep_prefix` False: the shared prefix runs through every layer at every step (`PrefixKV(keep=False)`)."""
    torch.manual_seed(0)
    model = build_model(backbone, cfg, lora, device)
    model.prefix_kv = PrefixKV(keep=keep_prefix)
    model.train()
    optimizer = make_optimizer(model, cfg)
    weights = LossWeights()
    verifier, tables = verifier.to(device), (tables[0].to(device), tables[1].to(device))
    cuda = device.type == "cuda"
    seconds, tokens, memory = [], 0, {}
    for step in range(steps + 1):
        if cuda and step == 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            memory["before GiB"] = torch.cuda.memory_allocated() / 2**30
        start = time.perf_counter()
        chunk = examples[step * per_step:(step + 1) * per_step]
        for i in range(0, len(chunk), cfg.micro_batch):
            batch = collate(chunk[i:i + cfg.micro_batch], tokenizer.pad_token_id, share_prefix=cfg.share_prefix)
            with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                terms, _ = step_losses(model, batch.to(device), verifier, *tables, weights)
            (weights.combine(terms) * len(batch.sources) / len(chunk)).backward()
            tokens += batch.n_tokens if step else 0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step:
            seconds.append(time.perf_counter() - start)
    total = sum(seconds)
    if cuda:
        memory["peak GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return {"examples/s": steps * per_step / total, "tokens/s": tokens / total, "s/step": total / steps,
            **memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--mixture", default="20_80")
    parser.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast, as training "
                        "does on CUDA and on CPUs with bf16 instructions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    amp = torch.bfloat16 if args.precision == "bf16" else None
    base = SFTConfig(precision=args.precision, device="cpu")
    tokenizer, verifier, tables, examples = load_examples(
        REPO / "data/backbone", REPO / f"data/mix/{args.mixture}/train.jsonl", REPO / "data/verifier/verifier.pt",
        REPO.parent / "shared/data", EXAMPLES_PER_STEP * (args.steps + 1), base)
    out = []
    for name, (changes, last) in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        lora = replace(PARAMS_LORA, last_layers=last)                # params.yaml's adapters (dropout 0), these layers
        res = measure(replace(base, **changes), lora, examples, tokenizer, verifier, tables, args.steps, amp=amp,
                      keep_prefix=WHOLE_PREFIX not in name)
        out.append({"configuration": name, **{k: f"{v:.2f}" if k != "tokens/s" else f"{v:.0f}" for k, v in res.items()}})
        print(out[-1], flush=True)
    print(f"\n{args.threads} torch threads, {EXAMPLES_PER_STEP} examples per step, {args.steps} timed steps, "
          f"{args.precision}, all six loss terms, mixture {args.mixture}\n")
    print(markdown_table(pd.DataFrame(out), "lrrr"))


if __name__ == "__main__":
    main()
