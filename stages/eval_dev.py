"""DVC stage `eval_dev@<mixture>-<seed>`: full evaluation of one SFT run on its mixture's dev split.

Usage: python stages/eval_dev.py 20_80 11
Writes data/eval/<run>/outputs.jsonl (per-example, resumable), metrics/eval_dev/<run>.json (the metrics) and
metrics/eval_dev/<run>_timing.json (this run's decoding statistics and speed: they differ after a resume).
"""

import sys
from pathlib import Path

from emoloom.core.config import require
from emoloom.core.io import write_json
from emoloom.core.params import load_params
from emoloom.core.resources import raw_root, resource_path
from emoloom.core.stage import run_stage
from emoloom.data.flip import load_antonyms
from emoloom.data.lexicon import load_lexicon
from emoloom.evaluation.runner import EvalConfig
from emoloom.evaluation.scoring import evaluate_file


def main(mixture: str, seed: str) -> None:
    params = load_params()
    run = f"{mixture}-s{seed}"
    dev_max_rows = params["eval"].get("dev_max_rows")
    require(dev_max_rows is None or (type(dev_max_rows) is int and dev_max_rows >= 1),
            f"eval.dev_max_rows: must be an integer >= 1 (null: every row), got {dev_max_rows!r}")
    cfg = EvalConfig.from_params(params["eval"], max_rows=dev_max_rows)
    root = raw_root(params["data"]["raw_root"])
    lexicon = load_lexicon(params["weak_vad"]["lexicon"], root)
    result = evaluate_file(Path(f"data/sft/{run}/model"), Path(f"data/mix/{mixture}/dev.jsonl"), Path(f"data/eval/{run}"),
                           cfg, train_path=Path(f"data/mix/{mixture}/train.jsonl"), lexicon=lexicon,
                           antonyms=load_antonyms(resource_path(root, "antonyms"), lexicon), desc=f"eval_dev {run}")
    write_json(f"metrics/eval_dev/{run}.json", {"run": run, "mixture": mixture, "seed": int(seed), **result["metrics"]})
    write_json(f"metrics/eval_dev/{run}_timing.json", {"run": run, **result["runtime"]})


if __name__ == "__main__":
    run_stage("eval_dev", main, *sys.argv[1:3])
