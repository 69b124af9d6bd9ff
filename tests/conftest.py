"""Shared fixtures: the real raw-data root and a small real subset of it (made in a temp dir, never committed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def real_raw_root() -> Path:
    configured = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["raw_root"]
    root = Path(os.environ.get("EMOLOOM_RAW_ROOT") or configured)
    return root if root.is_absolute() else (REPO / root).resolve()


@pytest.fixture(scope="session")
def raw_root() -> Path:
    root = real_raw_root()
    if not (root / "goemotions" / "train.tsv").is_file():
        pytest.fail(f"raw data not found at {root}: set EMOLOOM_RAW_ROOT or data.raw_root (docs/data.md)")
    return root


# relative path -> lines kept (header included); lexica and label lists are copied whole.
SUBSET = {
    "goemotions/train.tsv": 600, "goemotions/dev.tsv": 200,
    "empatheticdialogues/situation_level/train.csv": 500, "empatheticdialogues/situation_level/valid.csv": 150,
    "empatheticdialogues/utterance_level/valid.csv": 200,
    "dailydialog/convlab3_unified/dailydialog_train.jsonl": 60,
    "dailydialog/convlab3_unified/dailydialog_validation.jsonl": 30,
    "emobank/emobank.csv": 200,
}
WHOLE = ["goemotions/emotions.txt", "goemotions/ekman_mapping.json", "empatheticdialogues/labels.txt",
         "nrc_vad/NRC-VAD-Lexicon.txt", "warriner2013/Ratings_Warriner_et_al.csv",
         "antonyms/wordnet30_antonym_pairs.tsv"]


@pytest.fixture(scope="session")
def small_raw_root(raw_root, tmp_path_factory) -> Path:
    """The first lines of every real raw file, in the raw layout."""
    root = tmp_path_factory.mktemp("raw")
    for rel, n in SUBSET.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        with open(raw_root / rel, encoding="utf-8", newline="") as src:
            lines = [line for _, line in zip(range(n), src)]
        (root / rel).write_text("".join(lines), encoding="utf-8", newline="")
    for rel in WHOLE:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw_root / rel, root / rel)
    return root


@pytest.fixture(scope="session")
def nrc(raw_root):
    from emoloom.lexicon import load_lexicon
    return load_lexicon("nrc_vad", raw_root)
