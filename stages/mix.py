"""DVC stage `mix@<name>`: one A:B mixture (A = GoEmotions, B = EmpatheticDialogues) with a frozen train/dev split.

Usage: python stages/mix.py 20_80   -> data/mix/20_80/{train,dev}.jsonl and data/mix/20_80/manifest.json
"""

import sys
from pathlib import Path

from emoloom.core.config import from_section
from emoloom.core.errors import ParamError
from emoloom.core.io import read_jsonl, sha1_file, write_json, write_jsonl
from emoloom.core.params import load_section
from emoloom.core.stage import run_stage
from emoloom.data.mixing import MixConfig, build_mixture

SOURCES = {"A": Path("data/weak/goemotions/train.jsonl"), "B": Path("data/weak/empathetic/train.jsonl")}
HELD_OUT = {"A": "data/weak/goemotions/dev.jsonl", "B": "data/weak/empathetic/dev.jsonl"}


def main(name: str) -> None:
    cfg = from_section(MixConfig, load_section("mix"), "mix")
    if name not in cfg.mixtures:
        raise ParamError(f"unknown mixture {name!r}; params.yaml mix.mixtures has {sorted(cfg.mixtures)}")
    weight_a, weight_b = cfg.mixtures[name]
    pools = {s: list(read_jsonl(path)) for s, path in SOURCES.items()}
    train, dev = build_mixture(pools["A"], pools["B"], weight_a, weight_b, cfg.seed, cfg.dev_frac, cfg.max_rows)
    out = Path("data/mix") / name
    shards = {}
    for split, rows in (("train", train), ("dev", dev)):
        path = out / f"{split}.jsonl"
        write_jsonl(path, (dict(r, split=split) for r in rows))
        shards[split] = {"path": str(path), "rows": len(rows), "sha1": sha1_file(path),
                         "by_source": {src: sum(r["source"] == src for r in rows) for src in ("goemotions", "empathetic")}}
    write_json(out / "manifest.json", {
        "mix": f"{weight_a}:{weight_b}", "name": name, "seed": cfg.seed, "dev_frac": cfg.dev_frac,
        "max_rows": cfg.max_rows,
        "sources": {s: {"path": str(p), "rows_available": len(pools[s]), "sha1": sha1_file(p)} for s, p in SOURCES.items()},
        "splits": shards,
        "held_out_dev": HELD_OUT,
    })


if __name__ == "__main__":
    run_stage("mix", main, *sys.argv[1:2])
