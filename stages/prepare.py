"""DVC stage `prepare`: raw corpora -> data/prepared/<corpus>/<split>.jsonl and metrics/prepare.json."""

from pathlib import Path

from emoloom.core.config import from_section
from emoloom.core.io import write_json
from emoloom.core.params import load_section
from emoloom.core.resources import raw_root
from emoloom.core.stage import run_stage
from emoloom.data.prepare import CORPORA, PrepareConfig, prepare_corpus

OUT_DIR = Path("data/prepared")


def main() -> None:
    cfg = from_section(PrepareConfig, load_section("prepare"), "prepare")
    root = raw_root(load_section("data")["raw_root"])
    report = {name: prepare_corpus(name, root, OUT_DIR, cfg) for name in CORPORA}
    write_json("metrics/prepare.json", {corpus: {split: {k: v for k, v in r.items() if k != "labels"}
                                                  for split, r in splits.items()}
                                        for corpus, splits in report.items()})
    write_json("metrics/label_histogram.json", {f"{corpus}/{split}": r["labels"]
                                                for corpus, splits in report.items() for split, r in splits.items()})


if __name__ == "__main__":
    run_stage("prepare", main)
