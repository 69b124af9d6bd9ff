"""DVC stage `eval_dd_quick`: the time-budgeted cross-corpus probe on DailyDialog (paper: 1 hour, 48 new tokens).

The probed run is `best` by default: the one `compare` names in metrics/best.json (the dev composite's choice), as
the paper probes its best mixture. Rows are taken in a seeded order until the budget is spent; scores are in the
28-label space and projected to Ekman-7.
Writes data/eval/dd_quick/outputs.jsonl, metrics/eval_dd_quick.json and metrics/eval_dd_quick_timing.json.
"""

import json
from pathlib import Path

from emoloom.core.config import from_section
from emoloom.core.io import write_json
from emoloom.core.params import load_params
from emoloom.core.resources import raw_root, resource_path
from emoloom.core.stage import run_stage
from emoloom.data.lexicon import load_lexicon
from emoloom.evaluation.runner import EvalConfig, QuickProbeConfig
from emoloom.evaluation.scoring import evaluate_file
from emoloom.inference.predictor import resolve_model

PROBE = Path("data/weak/dailydialog/dev_dailydialog_weak.jsonl")


def main() -> None:
    params = load_params()
    quick = from_section(QuickProbeConfig, params["eval_dd_quick"], "eval_dd_quick")
    bundle = resolve_model("best" if quick.run == "best" else f"data/sft/{quick.run}/model")
    run = bundle.parent.name                                   # <mixture>-s<seed>
    mixture = run.rsplit("-s", 1)[0]
    root = raw_root(params["data"]["raw_root"])
    cfg = EvalConfig.from_params(params["eval"], time_budget_min=quick.time_budget_min, stream_seed=quick.stream_seed,
                                 max_new_tokens=quick.max_new_tokens, heads_all_rows=False,
                                 context_turns=quick.context_turns)
    ekman = json.loads(resource_path(root, "goemotions_ekman").read_text(encoding="utf-8"))
    result = evaluate_file(bundle, PROBE, Path("data/eval/dd_quick"), cfg,
                           train_path=Path(f"data/mix/{mixture}/train.jsonl"),
                           lexicon=load_lexicon(params["weak_vad"]["lexicon"], root), ekman_mapping=ekman,
                           desc=f"eval_dd_quick {run}")
    write_json("metrics/eval_dd_quick.json", {"run": run, "time_budget_min": quick.time_budget_min, **result["metrics"]})
    write_json("metrics/eval_dd_quick_timing.json", {"run": run, **result["runtime"]})


if __name__ == "__main__":
    run_stage("eval_dd_quick", main)
