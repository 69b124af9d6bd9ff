"""Which hidden layer should the heads read, and from how many refit rows? (docs/training.md, "The heads' layer")

    .venv/bin/python benchmarks/bench_heads_layer.py --mixture 80_20 --layers 14,30 --train-rows 1536,4608

A trained run's model (data/sft/<mixture>-s11/model) runs only its first k decoder layers, then the final norm
(`model.first_layers`, what `prompt_features` does for `heads_layer` k), and pools them over each prompt's user turn.
Fresh heads are refitted on the first N of a seeded sample of training rows as `heads_fit.refit_heads` does at export
(standardisation, prior biases, epoch choice and per-label thresholds on a held-out fifth), once per held-out seed,
and scored on the first dev rows (hash order): macro-F1 strict over the gold subspace, ρ̄ of the VAD head, labels
per row. Feature seconds per 100 rows show what a shallower read-out saves (the forward stops at layer k).
With `lora.last_layers` 8 of 30, layers up to 22 are the frozen backbone's. Needs `dvc repro sft@<mixture>-11`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_heads import targets  # noqa: E402

from emoloom.core.io import read_jsonl  # noqa: E402
from emoloom.evaluation.metrics import vad_metrics  # noqa: E402
from emoloom.evaluation.runner import EvalConfig  # noqa: E402
from emoloom.evaluation.screening import pooled_features  # noqa: E402
from emoloom.modeling.model import Heads, first_layers, heads_decisions, load_bundle  # noqa: E402
from emoloom.training.heads_fit import _macro_f1, refit_heads  # noqa: E402


def as_vad(rows: torch.Tensor) -> list[dict]:
    return [dict(zip("vad", map(float, row))) for row in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixture", default="20_80")
    ap.add_argument("--layers", default="14,30", help="comma-separated k: read the output of decoder layer k")
    ap.add_argument("--train-rows", default="1536,3072,4608", help="comma-separated N: refit on the first N")
    ap.add_argument("--dev-rows", type=int, default=900)
    ap.add_argument("--seeds", default="11,22,33", help="held-out split seeds of the refit")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layers, sizes = [int(k) for k in args.layers.split(",")], [int(n) for n in args.train_rows.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    model, tokenizer, _ = load_bundle(REPO / f"data/sft/{args.mixture}-s11/model")
    mix = REPO / "data/mix" / args.mixture
    train = random.Random(0).sample(list(read_jsonl(mix / "train.jsonl")), max(sizes))
    dev = list(read_jsonl(mix / "dev.jsonl"))[:args.dev_rows]
    (y, v), (y_dev, v_dev) = targets(train), targets(dev)
    cfg = EvalConfig(max_len=384)
    print(f"{args.mixture}: {len(dev)} dev rows (gold {y_dev.sum(1).mean():.2f} labels per row), {args.threads} torch "
          f"threads, depth {model.lm.config.num_hidden_layers}\n")
    print("| layer | refit rows | feature s / 100 rows | dev macro-F1 (per seed) | heads ρ̄ | labels per row |")
    print("|---:|---:|---:|---|---:|---:|")
    for k in layers:
        with first_layers(model.lm, k):
            start = time.perf_counter()
            x_dev = pooled_features(model.lm, tokenizer, dev, cfg, 32)
            per_100 = 100 * (time.perf_counter() - start) / len(dev)
            x_all = pooled_features(model.lm, tokenizer, train, cfg, 32)
        for n in sizes:
            f1s, rhos, per_row = [], [], []
            for seed in seeds:
                heads = Heads(x_all.size(1))
                refit_heads(heads, x_all[:n], y[:n], v[:n], seed)
                with torch.no_grad():
                    label_logits, vad = heads(x_dev)
                f1s.append(_macro_f1(heads, x_dev, y_dev))
                rhos.append(vad_metrics(as_vad(v_dev), as_vad(vad))["rho_mean"])
                per_row.append(np.mean([len(a["labels"]) for a in heads_decisions(label_logits, vad)]))
            print(f"| {k} | {n} | {per_100:.1f} | **{np.mean(f1s):.3f}** ({' / '.join(f'{f:.3f}' for f in f1s)}) | "
                  f"{np.mean(rhos):.3f} | {np.mean(per_row):.2f} |", flush=True)


if __name__ == "__main__":
    main()
