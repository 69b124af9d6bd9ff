"""DVC stage `sft@<mixture>-<seed>`: fine-tune the backbone on one mixture with one seed.

Usage: python stages/sft.py 20_80 11      (python stages/sft.py --help: every setting it reads)
Writes data/sft/<run>/checkpoint.pt (resumable, persisted by DVC), data/sft/<run>/model/ (the bundle),
metrics/sft/<run>.json, metrics/sft/<run>_timing.json and plots/sft/<run>/{train_log.csv,dev_log.csv,decisions.jsonl}.
"""

import sys
from pathlib import Path

from emoloom.core.config import from_section, help_table
from emoloom.core.errors import ParamError
from emoloom.core.io import write_json
from emoloom.core.params import load_params
from emoloom.core.resources import raw_root, resource_path
from emoloom.core.stage import run_stage
from emoloom.data.lexicon import load_lexicon
from emoloom.modeling.model import LoraSettings
from emoloom.training.config import LossWeights, RunPaths, SFTConfig
from emoloom.training.loop import train

SOURCES = ("goemotions", "empathetic")      # mixture weights are [GoEmotions, EmpatheticDialogues]


def main(mixture: str, seed: str) -> None:
    params = load_params()
    if mixture not in params["mix"]["mixtures"]:
        raise ParamError(f"unknown mixture {mixture!r}; params.yaml mix.mixtures has {sorted(params['mix']['mixtures'])}")
    run = f"{mixture}-s{seed}"
    cfg = from_section(SFTConfig, params["sft"]["train"], "sft.train", seed=int(seed))
    weights = from_section(LossWeights, params["loss"], "loss")
    lora = from_section(LoraSettings, params["lora"], "lora")
    root = raw_root(params["data"]["raw_root"])
    paths = RunPaths(train=Path(f"data/mix/{mixture}/train.jsonl"), dev=Path(f"data/mix/{mixture}/dev.jsonl"),
                     backbone=Path(params["backbone"]["out_dir"]), verifier=Path("data/verifier/verifier.pt"),
                     antonyms=resource_path(root, "antonyms"), out=Path("data/sft") / run, plots=Path("plots/sft") / run)
    result = train(cfg, weights, lora, paths, dict(zip(SOURCES, params["mix"]["mixtures"][mixture])),
                   load_lexicon(params["weak_vad"]["lexicon"], root), run)
    write_json(f"metrics/sft/{run}.json", result["metrics"])
    write_json(f"metrics/sft/{run}_timing.json", result["timing"])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        for title, cls in (("sft.train", SFTConfig), ("loss", LossWeights), ("lora", LoraSettings)):
            print(f"params.yaml `{title}`:\n\n{help_table(cls)}")
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
    run_stage("sft", main, *sys.argv[1:3])
