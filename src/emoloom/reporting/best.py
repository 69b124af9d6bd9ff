"""The best fine-tuned run, named: the paper's composite (emoloom.core.composite) across every (mixture, seed) run
on its own dev split, from the strict generated metrics (all decoded rows count; an unparsable answer scores as empty
labels and the neutral VAD point) and ParseOK as the quality term. `compare` writes it to metrics/best.json, so
`emoloom predict best ...` finds the bundle."""

from __future__ import annotations

from typing import Mapping

from emoloom.core.composite import screening_scores

RULE = ("max composite = 0.4 z(macro-F1 strict) + 0.4 [z(rho_mean strict) - z(RMSE strict)]/2 + 0.2 z(ParseOK), "
        "z across runs; ties go to the first run in params order")


def _inputs(metrics: Mapping) -> dict[str, float]:
    gen = metrics["generated"]
    strict = gen["strict"]
    return {"macro_f1": strict["labels"]["macro_f1"] or 0.0, "rmse": strict["vad"]["rmse"] or 1.0,
            "rho_mean": strict["vad"]["rho_mean"] or 0.0, "quality": gen["parse_ok"] or 0.0}


def best_run(runs: Mapping[str, Mapping[int, Mapping]]) -> dict:
    """{"run", "bundle", "rule", "runs": {run: inputs + z-scores + composite}} over mixture -> seed -> eval_dev JSON."""
    flat = {metrics.get("run", f"{m}-s{s}"): metrics for m, by_seed in runs.items() for s, metrics in by_seed.items()}
    inputs = {name: _inputs(metrics) for name, metrics in flat.items()}
    scores = screening_scores(inputs)
    best = max(flat, key=lambda name: (scores[name]["composite"], -list(flat).index(name)))
    return {"run": best, "bundle": flat[best].get("model", f"data/sft/{best}/model"), "rule": RULE,
            "runs": {name: {**inputs[name], **scores[name]} for name in flat}}
