"""Optional download path for users with internet: corpora the Hugging Face hub hosts, written in the raw layout.

Only GoEmotions is hosted there in a stable, script-free form (parquet, config "simplified"); the other resources'
origins are listed in docs/data.md. This needs `pip install datasets` and network access; nothing else in EmoLoom does.
"""

from __future__ import annotations

from pathlib import Path

from emoloom.core.io import write_text

GOEMOTIONS_HUB_ID = "google-research-datasets/go_emotions"
SPLITS = {"train": "train.tsv", "validation": "dev.tsv"}  # the test split is left out on purpose


def download_goemotions(root: Path) -> list[Path]:
    """Fetch GoEmotions (simplified) from the hub into <root>/goemotions/{train,dev}.tsv and emotions.txt."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise SystemExit("downloading needs the `datasets` package: pip install datasets") from None
    ds = load_dataset(GOEMOTIONS_HUB_ID, "simplified")
    out = Path(root) / "goemotions"
    written = []
    for split, fname in SPLITS.items():
        rows = ds[split]
        lines = (f"{t}\t{','.join(map(str, ls))}\t{i}" for t, ls, i in zip(rows["text"], rows["labels"], rows["id"]))
        write_text(out / fname, "\n".join(lines) + "\n")
        written.append(out / fname)
    names = ds["train"].features["labels"].feature.names
    write_text(out / "emotions.txt", "\n".join(names))
    return written + [out / "emotions.txt"]
