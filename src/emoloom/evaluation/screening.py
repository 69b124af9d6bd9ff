"""Backbone screening (paper: Implementation Details, Table 1, Figure 2), two ways side by side.

- zero-shot: the frozen contract prompt, greedy decoding under one time budget per candidate, scored like any
  evaluation; the paper's composite ranks the candidates.
- probe: the label and VAD heads trained for the same small fixed budget on each *frozen* backbone's pooled prompt
  features, scored on the same dev rows. Small backbones barely follow the contract zero-shot (ParseOK ~0), so the
  zero-shot table alone ranks noise; the probe says which representation the fine-tuning would start from.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import pandas as pd
import torch

from emoloom.core.config import option, validate
from emoloom.core.contract import ParseResult, parse_output, user_turn_start
from emoloom.core.labels import LABEL_INDEX, NUM_LABELS
from emoloom.core.tables import markdown_table
from emoloom.evaluation.metrics import evaluate, quality_scores, screening_scores
from emoloom.evaluation.runner import EvalConfig, as_result, decode_rows, fit_prompt, ordered
from emoloom.modeling.model import Heads, heads_decisions, prompt_features


@dataclass(frozen=True)
class ProbeConfig:
    """The frozen-feature probe (params.yaml `screen.probe`)."""
    train_rows: int = option(400, "training rows whose frozen features the heads are fitted on", ge=1)
    epochs: int = option(30, "full-batch Adam steps over those features", ge=0)
    lr: float = option(0.03, "Adam learning rate", gt=0)
    batch_size: int = option(16, "rows per feature forward", ge=1)
    seed: int = option(0, "row sample and head init")

    def __post_init__(self) -> None:
        validate(self, "screen.probe")


@dataclass(frozen=True)
class ScreenConfig:
    """Backbone screening (params.yaml `screen`, without its `probe` block)."""
    candidates: tuple[str, ...] = option(("smollm2-135m-instruct",), "registry names, local directories or hub ids")
    mixture: str = option("20_80", "rows come from this mixture (dev: scoring; train: probe fit)")
    time_budget_min: float = option(1.0, "zero-shot decoding budget per candidate", gt=0)
    max_new_tokens: int = option(48, "zero-shot decoding budget per answer", ge=1)
    stream_seed: int = option(42, "seeded row order")
    probe_dev_rows: int = option(200, "dev rows the probe is scored on", ge=1)

    def __post_init__(self) -> None:
        validate(self, "screen")


def candidate_summary(scored: dict, results: list[ParseResult] | None) -> dict:
    """The Table 1 columns of one candidate: macro_f1, rmse_mean, rho_mean and the quality scores."""
    paper = scored["paper"]
    row = {"n": scored["n"], "parse_ok": scored["parse_ok"], "macro_f1": paper["labels"]["macro_f1"] or 0.0,
           "rmse": paper["vad"]["rmse"] if paper["vad"]["rmse"] is not None else 1.0,
           "rho_mean": paper["vad"]["rho_mean"] or 0.0,
           "strict_macro_f1": scored["strict"]["labels"]["macro_f1"] or 0.0}
    row.update(quality_scores(results) if results is not None else {"quality": 1.0})
    return row


def zero_shot(lm, tokenizer, records: list[dict], cfg: EvalConfig) -> dict:
    """Decode the contract prompt on rows in seeded order until the budget is spent; score the answers."""
    rows, results, start = ordered(records, cfg), [], time.perf_counter()
    scored_rows = []
    for i in range(0, len(rows), cfg.batch_size):
        chunk = rows[i:i + cfg.batch_size]
        prompts = [fit_prompt(r, tokenizer, cfg.max_len, cfg.max_new_tokens) for r in chunk]
        live = [p for p in prompts if p is not None]
        gens = iter(decode_rows(lm, tokenizer, live, cfg)[0])
        for p in prompts:
            results.append(parse_output(next(gens).text) if p is not None
                           else ParseResult(False, failure="input_overflow"))
        scored_rows += chunk
        if cfg.time_budget_min and time.perf_counter() - start >= cfg.time_budget_min * 60:
            break
    summary = candidate_summary(evaluate(scored_rows, results), results)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary


def pooled_features(lm, tokenizer, records: list[dict], cfg: EvalConfig, batch_size: int) -> torch.Tensor:
    """Mean last-layer hidden state over each prompt's user turn (what the heads read), from the frozen backbone."""
    prompts = [fit_prompt(r, tokenizer, cfg.max_len, 0) or [] for r in records]
    starts = [user_turn_start(tokenizer, p) for p in prompts]
    return prompt_features(lm, prompts, starts, tokenizer.pad_token_id or 0, batch_size)


def probe(lm, tokenizer, train: list[dict], dev: list[dict], cfg: EvalConfig, probe_cfg: ProbeConfig) -> dict:
    """Fit the heads on frozen features of `train` for a fixed number of steps; score them on `dev`."""
    from emoloom.modeling.losses import cls_loss, reg_loss

    start = time.perf_counter()
    train = random.Random(probe_cfg.seed).sample(train, min(probe_cfg.train_rows, len(train)))
    x_train = pooled_features(lm, tokenizer, train, cfg, probe_cfg.batch_size)
    x_dev = pooled_features(lm, tokenizer, dev, cfg, probe_cfg.batch_size)
    y = torch.zeros(len(train), NUM_LABELS)
    for i, rec in enumerate(train):
        y[i, [LABEL_INDEX[k] for k in rec["labels"]]] = 1.0
    v = torch.tensor([[rec["vad"][k] for k in "vad"] for rec in train])
    torch.manual_seed(probe_cfg.seed)
    heads = Heads(x_train.size(1))
    heads.init_from_data(x_train, y, v)
    opt = torch.optim.Adam(heads.parameters(), lr=probe_cfg.lr)
    for _ in range(probe_cfg.epochs):
        label_logits, vad = heads(x_train)
        loss = cls_loss(label_logits, y) + reg_loss(vad, v)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        label_logits, vad = heads(x_dev)
    answers = [as_result(h, True, None) for h in heads_decisions(label_logits, vad)]
    summary = candidate_summary(evaluate(dev, answers), None)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary


def rank(candidates: dict[str, dict]) -> dict[str, dict]:
    """The paper's composite (z-scores across candidates) added to each candidate's row."""
    scores = screening_scores({name: {k: row[k] for k in ("macro_f1", "rmse", "rho_mean", "quality")}
                               for name, row in candidates.items()})
    return {name: {**row, **scores[name]} for name, row in candidates.items()}


def table_markdown(title: str, ranked: dict[str, dict]) -> str:
    cols = ["macro_f1", "rmse", "rho_mean", "quality", "q_json_ok", "q_struct_ok", "q_ratlen_ok", "z_f1", "z_vad",
            "z_quality", "composite"]
    rows = [{"model": name, **{c: f"{row[c]:+.2f}" if c.startswith("z_") or c == "composite" else
                               (f"{row[c]:.4f}" if c in row else "—") for c in cols}}
            for name, row in sorted(ranked.items(), key=lambda kv: -kv[1]["composite"])]
    return f"### {title}\n\n" + markdown_table(pd.DataFrame(rows, columns=["model", *cols]))
