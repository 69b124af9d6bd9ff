"""Convert any supported raw file into record JSONL (the `emoloom convert` command)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from emoloom.core.errors import DataError
from emoloom.core.io import write_jsonl
from emoloom.data.corpora import FORMATS, FileReport, ReadOptions, verified
from emoloom.data.lexicon import Lexicon
from emoloom.data.records import Deduper, filter_records
from emoloom.data.weak_vad import WeakVadConfig, annotate

CSV_HEADERS = {("text", "aug_text", "label"): "empathetic-situations",
               ("conv_id", "utterance_idx", "prompt", "utterance", "label"): "empathetic-utterances",
               ("id", "split", "v", "a", "d", "text"): "emobank",
               ("text", "labels"): "labelled-csv", ("text", "labels", "v", "a", "d"): "labelled-csv"}


def detect_format(path: Path) -> str:
    """Guess the raw format from the file name and, for CSV, its header."""
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "goemotions"
    if suffix == ".jsonl":
        return "dailydialog"
    if suffix == ".csv":
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            header = tuple(c.strip().lower() for c in next(csv.reader(f), []))
        if header in CSV_HEADERS:
            return CSV_HEADERS[header]
        raise DataError(f"{path}:1: unknown CSV header {header}; pass --format (one of {sorted(FORMATS)})")
    raise DataError(f"{path}: cannot tell the format from the name; pass --format (one of {sorted(FORMATS)})")


def convert_file(path: Path, out: Path, fmt: str, split: str, options: ReadOptions, lexicon: Lexicon | None,
                 vad_cfg: WeakVadConfig, min_tokens: int = 3, max_tokens: int = 128,
                 max_bad_frac: float = 0.01) -> tuple[int, FileReport]:
    """Read `path` as `fmt`, apply QC and de-duplication, add weak VAD if a lexicon is given, write `out`."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")
    report = FileReport(str(path))
    source = "user" if fmt == "labelled-csv" else fmt.split("-")[0]
    records = filter_records(FORMATS[fmt](path, report, options), source, split, report.dropped, Deduper(),
                             min_tokens, max_tokens)
    if lexicon is not None:
        records = (annotate(r, lexicon, vad_cfg) for r in records)
    return write_jsonl(out, verified(records, report, max_bad_frac)), report


def summary(n: int, report: FileReport) -> str:
    dropped = Counter(report.dropped)
    return f"{report.path}: {report.rows_in} rows in, {n} written, dropped {dict(dropped) or 'none'}"
