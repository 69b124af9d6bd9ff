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

from emoloom.core.composite import screening_scores
from emoloom.core.config import option, validate
from emoloom.core.contract import ParseResult, build_target, parse_output, user_turn_start
from emoloom.core.labels import LABEL_INDEX, NUM_LABELS
from emoloom.core.tables import markdown_table
from emoloom.evaluation.metrics import evaluate, quality_scores
from emoloom.evaluation.runner import EvalConfig, as_result, decode_rows, fit_prompt, ordered
from emoloom.evaluation.uncertainty import COMPOSITE_INPUTS, BootstrapConfig, attach, paired_bootstrap
from emoloom.modeling.model import Heads, heads_decisions, prompt_features


@dataclass(frozen=True)
class ProbeConfig:
    """The frozen-feature probe (params.yaml `screen.probe`)."""
    train_rows: int = option(400, "at most this many training rows whose frozen features the heads are fitted on",
                             ge=1)
    epochs: int = option(30, "full-batch Adam steps over those features", ge=0)
    lr: float = option(0.03, "Adam learning rate", gt=0)
    batch_size: int = option(16, "rows per feature forward", ge=1)
    seed: int = option(0, "row sample and head init")
    budget_min: float | None = option(None, "feature-extraction budget per candidate: train and dev rows shrink in "
                                            "proportion to fit it (None: train_rows and probe_dev_rows)", gt=0)

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
    probe_dev_rows: int = option(200, "dev rows the probe is scored on (at most, under probe.budget_min)", ge=1)
    few_shot: int = option(3, "the few-shot fallback arm: this many seeded training examples in the prompt, the same "
                              "for every candidate (0: no few-shot arm)", ge=0)

    def __post_init__(self) -> None:
        validate(self, "screen")


@dataclass
class Scored:
    """One candidate's answers on the screening rows, in row order: what its Table 1 row and intervals come from."""
    rows: list[dict]
    results: list[ParseResult]
    with_quality: bool            # zero-shot: quality from the answers; probe: heads always answer (quality 1)
    seconds: float
    prompt_format: str            # "chat template" or "plain text" (a tokenizer without one)

    def summary(self, idx=None) -> dict:
        """The Table 1 row on all rows, or on the rows `idx` (a bootstrap resample)."""
        rows = self.rows if idx is None else [self.rows[i] for i in idx]
        results = self.results if idx is None else [self.results[i] for i in idx]
        return candidate_summary(evaluate(rows, results), results if self.with_quality else None)

    def head(self, n: int) -> "Scored":
        return Scored(self.rows[:n], self.results[:n], self.with_quality, self.seconds, self.prompt_format)


def prompt_format(tokenizer) -> str:
    return "chat template" if getattr(tokenizer, "chat_template", None) else "plain text"


def candidate_summary(scored: dict, results: list[ParseResult] | None) -> dict:
    """The Table 1 columns of one candidate: macro_f1, rmse_mean, rho_mean and the quality scores."""
    paper = scored["paper"]
    row = {"n": scored["n"], "parse_ok": scored["parse_ok"], "macro_f1": paper["labels"]["macro_f1"] or 0.0,
           "rmse": paper["vad"]["rmse"] if paper["vad"]["rmse"] is not None else 1.0,
           "rho_mean": paper["vad"]["rho_mean"] or 0.0,
           "strict_macro_f1": scored["strict"]["labels"]["macro_f1"] or 0.0}
    row.update(quality_scores(results) if results is not None else {"quality": 1.0})
    return row


def few_shot_examples(train: list[dict], k: int, seed: int) -> list[tuple[str, str]]:
    """k seeded training rows as (message, gold answer line) pairs: the few-shot arm's examples."""
    rows = random.Random(seed).sample(train, min(k, len(train)))
    return [(r["text"], build_target(r["labels"], r["vad"], r.get("vad_cues") or ())) for r in rows]


def zero_shot(lm, tokenizer, records: list[dict], cfg: EvalConfig, examples: list[tuple[str, str]] = ()) -> Scored:
    """Decode the contract prompt (after `examples`, if any: the few-shot arm) on rows in seeded order until the
    budget is spent; score the answers."""
    rows, results, start = ordered(records, cfg), [], time.perf_counter()
    scored_rows = []
    for i in range(0, len(rows), cfg.batch_size):
        chunk = rows[i:i + cfg.batch_size]
        prompts = [fit_prompt(r, tokenizer, cfg.max_len, cfg.max_new_tokens, examples) for r in chunk]
        live = [p for p in prompts if p is not None]
        gens = iter(decode_rows(lm, tokenizer, live, cfg)[0])
        for p in prompts:
            results.append(parse_output(next(gens).text) if p is not None
                           else ParseResult(False, failure="input_overflow"))
        scored_rows += chunk
        if cfg.time_budget_min and time.perf_counter() - start >= cfg.time_budget_min * 60:
            break
    shots = f", {len(examples)}-shot" if examples else ""
    return Scored(scored_rows, results, True, round(time.perf_counter() - start, 1), prompt_format(tokenizer) + shots)


def pooled_features(lm, tokenizer, records: list[dict], cfg: EvalConfig, batch_size: int) -> torch.Tensor:
    """Mean last-layer hidden state over each prompt's user turn (what the heads read), from the frozen backbone."""
    prompts = [fit_prompt(r, tokenizer, cfg.max_len, 0) or [] for r in records]
    starts = [user_turn_start(tokenizer, p) for p in prompts]
    return prompt_features(lm, prompts, starts, tokenizer.pad_token_id or 0, batch_size)


def probe_rows(lm, tokenizer, train: list[dict], dev: list[dict], cfg: EvalConfig,
               probe_cfg: ProbeConfig) -> tuple[list[dict], list[dict]]:
    """The probe's (train, dev) rows: a seeded sample of train_rows and the first dev rows; under a budget both shrink
    in proportion to what the feature forward of one timed batch of dev rows says fits."""
    train = random.Random(probe_cfg.seed).sample(train, min(probe_cfg.train_rows, len(train)))
    if probe_cfg.budget_min is None:
        return train, dev
    start = time.perf_counter()
    pooled_features(lm, tokenizer, dev[:probe_cfg.batch_size], cfg, probe_cfg.batch_size)
    per_row = (time.perf_counter() - start) / min(probe_cfg.batch_size, len(dev))
    share = min(1.0, probe_cfg.budget_min * 60 / per_row / max(len(train) + len(dev), 1))
    return train[:max(1, int(len(train) * share))], dev[:max(1, int(len(dev) * share))]


def probe(lm, tokenizer, train: list[dict], dev: list[dict], cfg: EvalConfig, probe_cfg: ProbeConfig) -> Scored:
    """Fit the heads on frozen features of `train` for a fixed number of steps; score them on `dev`."""
    from emoloom.modeling.losses import cls_loss, reg_loss

    start = time.perf_counter()
    train, dev = probe_rows(lm, tokenizer, train, dev, cfg, probe_cfg)
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
    return Scored(dev, answers, False, round(time.perf_counter() - start, 1), prompt_format(tokenizer))


def rank(candidates: dict[str, Scored], boot: BootstrapConfig) -> dict[str, dict]:
    """Table 1 rows on the rows every candidate scored (the first n of the same seeded order), the paper's composite,
    and the paired bootstrap's intervals, rank-1 frequencies and ties (emoloom.evaluation.uncertainty)."""
    n = min(len(s.rows) for s in candidates.values())
    common = {k: s.head(n) for k, s in candidates.items()}
    points = {k: {**s.summary(), "n_scored": len(candidates[k].rows), "seconds": s.seconds,
                  "prompt_format": s.prompt_format} for k, s in common.items()}
    scores = screening_scores({k: {m: r[m] for m in COMPOSITE_INPUTS} for k, r in points.items()})
    points = {k: {**r, **scores[k]} for k, r in points.items()}
    draws = paired_bootstrap(n, lambda idx: {k: s.summary(idx) for k, s in common.items()}, boot)
    return attach(points, draws, n, boot.level)


def _signed(x: float) -> str:
    return f"{round(x, 2) + 0.0:+.2f}"          # + 0.0: no "-0.00"


def _with_ci(row: dict, key: str) -> str:
    lo, hi = row["ci"][key]
    return f"{row[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def table_markdown(title: str, ranked: dict[str, dict]) -> str:
    """Table 1 with intervals: point [95% interval] per metric, the composite and its interval, how often the
    candidate ranks first over the bootstrap resamples, and whether it is tied with the leader."""
    rows = []
    for name, row in sorted(ranked.items(), key=lambda kv: -kv[1]["composite"]):
        rows.append({"model": name, "prompt": row["prompt_format"], "n": row["n"],
                     **{k: _with_ci(row, k) for k in ("macro_f1", "rmse", "rho_mean", "parse_ok")},
                     "quality": f"{row['quality']:.3f}",
                     **{k: _signed(row[k]) for k in ("z_f1", "z_vad", "z_quality")},
                     "composite": f"{_signed(row['composite'])} [{_signed(row['ci']['composite'][0])}, "
                                  f"{_signed(row['ci']['composite'][1])}]",
                     "rank-1": f"{row['rank1']:.0%}", "tied": "tied" if row["tied"] else "—"})
    ties = [k for k, r in ranked.items() if r["tied"]]
    verdict = (f"Tied (composite intervals overlap): {', '.join(sorted(ties))}." if ties else
               "No tie: the leader's composite interval overlaps no other." if len(ranked) > 1 else
               "One candidate: nothing to rank.")
    return f"### {title}\n\n" + markdown_table(pd.DataFrame(rows)) + f"\n{verdict}\n"
