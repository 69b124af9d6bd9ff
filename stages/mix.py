"""DVC stage `mix@<name>`: one A:B mixture (A = GoEmotions, B = EmpatheticDialogues) with a frozen train/dev split.

Usage: python stages/mix.py 20_80   -> data/mix/20_80/{train,dev}.jsonl and data/mix/20_80/manifest.json
"""

import sys
from pathlib import Path

from emoloom.core.io import read_jsonl, sha1_file, write_json, write_jsonl
from emoloom.core.params import load_section
from emoloom.data.mixing import build_mixture

SOURCES = {"A": Path("data/weak/goemotions/train.jsonl"), "B": Path("data/weak/empathetic/train.jsonl")}
HELD_OUT = {"A": "data/weak/goemotions/dev.jsonl", "B": "data/weak/empathetic/dev.jsonl"}


def main(name: str) -> None:
    params = load_section("mix")
    if name not in params["mixtures"]:
        raise SystemExit(f"unknown mixture {name!r}; params.yaml mix.mixtures has {sorted(params['mixtures'])}")
    weight_a, weight_b = params["mixtures"][name]
    pools = {s: list(read_jsonl(path)) for s, path in SOURCES.items()}
    train, dev = build_mixture(pools["A"], pools["B"], weight_a, weight_b, params["seed"], params["dev_frac"],
                               params.get("max_rows"))
    out = Path("data/mix") / name
    shards = {}
    for split, rows in (("train", train), ("dev", dev)):
        path = out / f"{split}.jsonl"
        write_jsonl(path, (dict(r, split=split) for r in rows))
        shards[split] = {"path": str(path), "rows": len(rows), "sha1": sha1_file(path),
                         "by_source": {src: sum(r["source"] == src for r in rows) for src in ("goemotions", "empathetic")}}
    write_json(out / "manifest.json", {
        "mix": f"{weight_a}:{weight_b}", "name": name, "seed": params["seed"], "dev_frac": params["dev_frac"],
        "max_rows": params.get("max_rows"),
        "sources": {s: {"path": str(p), "rows_available": len(pools[s]), "sha1": sha1_file(p)} for s, p in SOURCES.items()},
        "splits": shards,
        "held_out_dev": HELD_OUT,
    })


if __name__ == "__main__":
    main(sys.argv[1])
