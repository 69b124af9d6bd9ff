"""How much VAD do a model's digit distributions carry beyond its greedy digits? (docs/training.md, E25)

    .venv/bin/python benchmarks/bench_vad_digits.py --mixture 80_20 [--rows 300] [--threads 2]

Reads an `eval_dev` run's own answers (data/eval/<mixture>-s11/outputs.jsonl, the protocol's greedy decoding) and
feeds each back to its model, teacher-forced after its prompt, in fp32. At each of v, a, d it reads the LM's
distribution over the ten digits at the first decimal (and at the second, given the greedy first) and scores the
expected value 0.1 E[d1] + 0.01 E[d2 | d1] beside the greedy value, both against the gold VAD of the dev rows:
Pearson r per dimension, ρ̄, and the spread (sd) of each readout. The expected value is a diagnostic, not a decoding
mode: the protocol scores the greedy answer. Needs `dvc repro eval_dev@<mixture>-11`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emoloom.core.io import read_jsonl  # noqa: E402
from emoloom.evaluation.metrics import vad_metrics  # noqa: E402
from emoloom.evaluation.runner import EvalConfig, fit_prompt  # noqa: E402
from emoloom.inference.predictor import EmotionModel  # noqa: E402

VAD_DIGITS = {k: re.compile(rf'"{k}":\s*0\.(\d)(\d)?') for k in "vad"}


def digit_positions(tokenizer, answer: str) -> tuple[list[int], dict[str, list[int]]]:
    """The answer's token ids and, per v/a/d, the token index of each decimal digit (SmolLM2 spells a digit a token)."""
    enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    at = {c: i for i, (start, end) in enumerate(enc["offset_mapping"]) for c in range(start, end)}
    positions = {}
    for k, pattern in VAD_DIGITS.items():
        m = pattern.search(answer)
        if m:
            positions[k] = [at[m.start(g)] for g in (1, 2) if m.group(g) is not None]
    return enc["input_ids"], positions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixture", default="80_20")
    ap.add_argument("--rows", type=int, default=300, help="the first N valid answers")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    bundle = EmotionModel.load(REPO / f"data/sft/{args.mixture}-s11/model")
    model, tokenizer, max_len, max_new = bundle.model, bundle.tokenizer, EvalConfig().max_len, bundle.max_new_tokens
    gold = {r["id"]: r for r in read_jsonl(REPO / f"data/mix/{args.mixture}/dev.jsonl")}
    answers = [d for d in read_jsonl(REPO / f"data/eval/{args.mixture}-s11/outputs.jsonl")
               if d.get("decoded") and d["valid"]][:args.rows]
    digits = torch.tensor([tokenizer.convert_tokens_to_ids(str(i)) for i in range(10)])
    greedy, expected, truth = [], [], []
    for d in tqdm(answers, desc="teacher-forced answers", unit="row"):
        prompt = fit_prompt(gold[d["id"]], tokenizer, max_len, max_new)
        answer_ids, positions = digit_positions(tokenizer, d["raw"])
        if prompt is None or set(positions) != set("vad"):
            continue
        with torch.no_grad():                 # logits of the answer's positions only: row t predicts answer token t
            logits = model.lm(input_ids=torch.tensor([prompt + answer_ids]),
                              logits_to_keep=len(answer_ids) + 1).logits[0].float()
        row = {}
        for k, pos in positions.items():
            probs = [torch.softmax(logits[t, digits], 0) for t in pos]
            row[k] = sum(0.1 ** (j + 1) * float((p * torch.arange(10)).sum()) for j, p in enumerate(probs))
        greedy.append(d["parsed"]["vad"]), expected.append(row), truth.append(gold[d["id"]]["vad"])

    print(f"{args.mixture}: {len(truth)} of {len(answers)} answers, fp32, {args.threads} torch threads\n")
    print("| readout | r_v | r_a | r_d | ρ̄ | sd v / a / d (gold " +
          " / ".join(f"{np.std([g[k] for g in truth]):.3f}" for k in "vad") + ") |")
    print("|---|---:|---:|---:|---:|---|")
    for name, pred in (("greedy digits (the protocol)", greedy), ("expected digits", expected)):
        m = vad_metrics(truth, pred, digits=None)
        print(f"| {name} | {m['r_v']:.3f} | {m['r_a']:.3f} | {m['r_d']:.3f} | **{m['rho_mean']:.3f}** | "
              + " / ".join(f"{np.std([p[k] for p in pred]):.3f}" for k in "vad") + " |")


if __name__ == "__main__":
    main()
