"""The `prepare` stage's logic: raw corpora -> record JSONL per corpus and split, plus a per-file report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from emoloom.core.config import option, require, validate
from emoloom.core.errors import DataError
from emoloom.core.io import write_jsonl
from emoloom.core.labels import LABELS
from emoloom.core.resources import resource_path
from emoloom.data.corpora import FORMATS, FileReport, ReadOptions, verified
from emoloom.data.records import Deduper, filter_records


@dataclass(frozen=True)
class PrepareConfig:
    """QC of the prepare stage (params.yaml `prepare`)."""
    min_tokens: int = option(3, "QC: shortest text kept, in word tokens", ge=1)
    max_tokens: int = option(128, "QC: longest text kept, in word tokens", ge=1)
    context_turns: int = option(2, "dialogue turns kept before an utterance as its context", ge=0)
    max_bad_frac: float = option(0.01, "a file with more malformed rows than this fraction stops the stage", ge=0,
                                 le=1)

    def __post_init__(self) -> None:
        validate(self, "prepare")
        require(self.max_tokens >= self.min_tokens,
                f"prepare.max_tokens ({self.max_tokens}) must be >= prepare.min_tokens ({self.min_tokens})")


# corpus -> (split, raw resource, format). Files of one corpus are read in this order and a text seen earlier wins,
# so dev splits come before train: a text in both stays in dev only.
CORPORA: dict[str, list[tuple[str, str, str]]] = {
    "goemotions": [("dev", "goemotions_dev", "goemotions"), ("train", "goemotions_train", "goemotions")],
    "empathetic": [("dev", "empathetic_dev", "empathetic-situations"),
                   ("train", "empathetic_train", "empathetic-situations"),
                   ("dev_utterances", "empathetic_utterances_dev", "empathetic-utterances")],
    "dailydialog": [("dev", "dailydialog_dev", "dailydialog"), ("train", "dailydialog_train", "dailydialog")],
}


def check_goemotions_labels(root: Path) -> None:
    path = resource_path(root, "goemotions_labels")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if tuple(names) != LABELS:
        raise DataError(f"{path}: label list differs from GoEmotions' 28 labels in canonical order")


def prepare_corpus(name: str, root: Path, out_dir: Path, cfg: PrepareConfig) -> dict:
    """Write `out_dir/<name>/<split>.jsonl` for every file of the corpus; return its report."""
    if name == "goemotions":
        check_goemotions_labels(root)
    options = ReadOptions(context_turns=cfg.context_turns,
                          ed_labels=resource_path(root, "empathetic_labels") if name == "empathetic" else None)
    report = {}
    deduper = Deduper()
    for split, resource, fmt in CORPORA[name]:
        path = resource_path(root, resource)
        file_report = FileReport(str(path))
        examples = tqdm(FORMATS[fmt](path, file_report, options), desc=f"prepare {name}/{split}", unit=" rows",
                        mininterval=1.0)
        records = filter_records(examples, name, split, file_report.dropped, deduper, cfg.min_tokens, cfg.max_tokens)
        histogram: Counter = Counter()
        kept = write_jsonl(out_dir / name / f"{split}.jsonl",
                           verified(counting_labels(records, histogram), file_report, cfg.max_bad_frac))
        report[split] = {"file": resource, "rows_in": file_report.rows_in, "rows_kept": kept,
                         "dropped": dict(sorted(file_report.dropped.items())),
                         "labels": {label: histogram[label] for label in LABELS if histogram[label]}}
    return report


def counting_labels(records: Iterable[dict], histogram: Counter) -> Iterator[dict]:
    for rec in records:
        histogram.update(rec["labels"])
        yield rec
