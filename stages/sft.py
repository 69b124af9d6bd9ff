"""DVC stage `sft@<mixture>-<seed>`: fine-tune the backbone on one mixture with one seed.

Usage: python stages/sft.py 20_80 11
Writes data/sft/<run>/checkpoint.pt (resumable, persisted by DVC), data/sft/<run>/model/ (the bundle),
metrics/sft/<run>.json, metrics/sft/<run>_timing.json and plots/sft/<run>/{train_log.csv,dev_log.csv,decisions.jsonl}.
"""

import sys
from pathlib import Path

from emoloom.io import write_json
from emoloom.lexicon import load_lexicon
from emoloom.model import LoraSettings
from emoloom.params import load_params
from emoloom.resources import raw_root, resource_path
from emoloom.train import LossWeights, RunPaths, SFTConfig, train

SOURCES = ("goemotions", "empathetic")      # mixture weights are [GoEmotions, EmpatheticDialogues]


def main(mixture: str, seed: str) -> None:
    params = load_params()
    if mixture not in params["mix"]["mixtures"]:
        raise SystemExit(f"unknown mixture {mixture!r}; params.yaml mix.mixtures has {sorted(params['mix']['mixtures'])}")
    run = f"{mixture}-s{seed}"
    cfg = SFTConfig(**{**params["sft"]["train"], "seed": int(seed)})
    lora = LoraSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in params["lora"].items()})
    root = raw_root(params["data"]["raw_root"])
    paths = RunPaths(train=Path(f"data/mix/{mixture}/train.jsonl"), dev=Path(f"data/mix/{mixture}/dev.jsonl"),
                     backbone=Path(params["backbone"]["out_dir"]), verifier=Path("data/verifier/verifier.pt"),
                     antonyms=resource_path(root, "antonyms"), out=Path("data/sft") / run, plots=Path("plots/sft") / run)
    result = train(cfg, LossWeights(**params["loss"]), lora, paths,
                   dict(zip(SOURCES, params["mix"]["mixtures"][mixture])),
                   load_lexicon(params["weak_vad"]["lexicon"], root), run)
    write_json(f"metrics/sft/{run}.json", result["metrics"])
    write_json(f"metrics/sft/{run}_timing.json", result["timing"])


if __name__ == "__main__":
    main(*sys.argv[1:3])
