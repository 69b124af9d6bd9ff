"""DVC stage `train_verifier`: fit the appraisal-atom verifier f_app on the weak GoEmotions + EmpatheticDialogues rows.

Outputs data/verifier/verifier.pt (AppraisalVerifier.save) and metrics/verifier.json (dev AUC / accuracy per atom).
"""

import time
from pathlib import Path

from transformers import AutoTokenizer

from emoloom.core.config import from_section
from emoloom.core.io import read_jsonl, write_json
from emoloom.core.params import load_section
from emoloom.core.resources import raw_root
from emoloom.core.stage import run_stage
from emoloom.data.lexicon import load_lexicon
from emoloom.training.verifier_fit import VerifierConfig, train_verifier

WEAK = Path("data/weak")
TRAIN_FILES = [WEAK / "goemotions/train.jsonl", WEAK / "empathetic/train.jsonl"]
DEV_FILES = [WEAK / "goemotions/dev.jsonl", WEAK / "empathetic/dev.jsonl"]
OUT, METRICS = Path("data/verifier/verifier.pt"), Path("metrics/verifier.json")


def main() -> None:
    cfg = from_section(VerifierConfig, load_section("train_verifier"), "train_verifier")
    lexicon = load_lexicon(load_section("weak_vad")["lexicon"], raw_root(load_section("data")["raw_root"]))
    tokenizer = AutoTokenizer.from_pretrained(load_section("backbone")["out_dir"])
    train = [r for path in TRAIN_FILES for r in read_jsonl(path)]
    dev = [r for path in DEV_FILES for r in read_jsonl(path)]
    start = time.perf_counter()
    verifier, metrics = train_verifier(train, dev, tokenizer, lexicon, cfg)
    verifier.save(OUT)
    write_json(METRICS, metrics)
    summary = {name: metrics["dev"][name]["mean"] for name in metrics["dev"]}
    print(f"train_verifier: {len(train)} train / {len(dev)} dev rows, {verifier.num_features} features, "
          f"{time.perf_counter() - start:.1f} s; dev mean {summary}")


if __name__ == "__main__":
    run_stage("train_verifier", main)
