"""How the heads read the pooled features: raw vs z-scores vs z/sqrt(hidden), zero vs prior biases (docs/training.md).

    .venv/bin/python benchmarks/bench_heads.py                 # 960 train / 200 dev rows of the 20:80 mixture

Frozen backbone features (data/backbone, the prompt-pooled last hidden state the heads read) are computed once; every
setting then trains `model.Heads` on them for the SFT budget (120 AdamW steps of 8 rows, weight decay 0.1) and the
screening probe's budget (full-batch Adam, 30 steps on 400 rows), and is scored on the same dev rows. Needs `dvc repro
mix@20_80 backbone` first.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emoloom.core.io import read_jsonl  # noqa: E402
from emoloom.core.labels import LABEL_INDEX, NUM_LABELS  # noqa: E402
from emoloom.evaluation.metrics import evaluate  # noqa: E402
from emoloom.evaluation.runner import EvalConfig, as_result  # noqa: E402
from emoloom.evaluation.screening import pooled_features  # noqa: E402
from emoloom.modeling.losses import cls_loss, reg_loss  # noqa: E402
from emoloom.modeling.model import Heads, heads_decisions  # noqa: E402


def targets(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.zeros(len(rows), NUM_LABELS)
    for i, rec in enumerate(rows):
        y[i, [LABEL_INDEX[k] for k in rec["labels"]]] = 1.0
    return y, torch.tensor([[rec["vad"][k] for k in "vad"] for rec in rows])


def make_heads(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, reading: str, priors: bool) -> Heads:
    """Heads whose input is raw features, z-scores, or z / sqrt(hidden) (the default), with zero or prior biases."""
    torch.manual_seed(0)
    heads = Heads(x.size(1))
    heads.init_from_data(x, y, v)
    with torch.no_grad():
        if reading == "raw":
            heads.feature_mean.zero_()
            heads.feature_scale.fill_(1.0)
        elif reading == "z":
            heads.feature_scale.div_(x.size(1) ** 0.5)
        if not priors:
            heads.labels.bias.zero_()
            heads.vad.bias.zero_()
    return heads


def score(heads: Heads, x_dev: torch.Tensor, dev: list[dict]) -> str:
    with torch.no_grad():
        label_logits, vad = heads(x_dev)
    paper = evaluate(dev, [as_result(a, True, None) for a in heads_decisions(label_logits, vad)])["paper"]
    return f"macro-F1 {paper['labels']['macro_f1']:.3f}  RMSE {paper['vad']['rmse']:.3f}  rho {paper['vad']['rho_mean']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixture", default="20_80")
    ap.add_argument("--train-rows", type=int, default=960)
    ap.add_argument("--dev-rows", type=int, default=200)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    backbone, mix = REPO / "data/backbone", REPO / "data/mix" / args.mixture
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    lm = AutoModelForCausalLM.from_pretrained(backbone).eval()
    train = random.Random(0).sample(list(read_jsonl(mix / "train.jsonl")), args.train_rows)
    dev = list(read_jsonl(mix / "dev.jsonl"))[:args.dev_rows]
    cfg = EvalConfig(max_len=384)
    x, x_dev = pooled_features(lm, tokenizer, train, cfg, 16), pooled_features(lm, tokenizer, dev, cfg, 16)
    y, v = targets(train)
    spread = x.std(0)
    print(f"features: {x.size(1)} dims, per-feature std max/median {spread.max() / spread.median():.1f}x")
    print(f"constant-mean VAD RMSE on these dev rows: "
          f"{((targets(dev)[1] - v.mean(0)) ** 2).mean(0).sqrt().mean():.3f}")

    for reading, priors, lr in (("raw", False, 2e-3), ("z", False, 2e-3), ("z", True, 2e-3), ("z", True, 1e-2),
                                ("z/sqrt(hidden)", True, 2e-3), ("z/sqrt(hidden)", True, 1e-2)):
        heads = make_heads(x[:128], y[:128], v[:128], reading, priors)       # statistics: head_init_rows = 128
        opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=0.1)
        g = torch.Generator().manual_seed(0)
        for _ in range(120):
            idx = torch.randint(0, len(train), (8,), generator=g)
            label_logits, vad = heads(x[idx])
            loss = cls_loss(label_logits, y[idx]) + reg_loss(vad, v[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"SFT budget   {reading:>15} priors={priors!s:5} lr={lr:g}: {score(heads, x_dev, dev)}")

    n = 400
    for lr in (0.01, 0.03):
        heads = make_heads(x[:n], y[:n], v[:n], "z/sqrt(hidden)", True)
        opt = torch.optim.Adam(heads.parameters(), lr=lr)
        for _ in range(30):
            label_logits, vad = heads(x[:n])
            loss = cls_loss(label_logits, y[:n]) + reg_loss(vad, v[:n])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"probe budget  z/sqrt(hidden) priors=True  lr={lr:g}: {score(heads, x_dev, dev)}")


if __name__ == "__main__":
    main()
