"""Where `emoloom predict` writes: JSONL (one prediction object per line) or CSV (flat columns), by extension, or
stdout. Rows are flushed after every batch into `<output>.partial`, renamed to `<output>` once every row is done: an
interrupted run leaves the rows it finished in the .partial file and never a half-written `<output>`."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from emoloom.inference.predictor import Prediction

CSV_COLUMNS = ("id", "text", "status", "labels", "v", "a", "d", "rationale", "heads_labels", "heads_v", "heads_a",
               "heads_d", "raw")


def csv_row(p: Prediction) -> dict:
    """A prediction as flat CSV cells: label lists joined by ';', numbers as they are, absent fields empty."""
    vad, heads = p.vad or {}, p.heads or {}
    return {"id": p.id, "text": p.text, "status": p.status, "labels": ";".join(p.labels or []),
            **{k: vad.get(k, "") for k in "vad"}, "rationale": p.rationale or "",
            "heads_labels": ";".join(heads.get("labels", [])),
            **{f"heads_{k}": heads.get("vad", {}).get(k, "") for k in "vad"}, "raw": p.raw or ""}


class PredictionWriter:
    """`with PredictionWriter(path) as w: w.write(batch)`; path None or '-' writes JSONL to stdout."""

    def __init__(self, path: str | Path | None):
        self.path = None if path in (None, "-") else Path(path)
        self.partial = None if self.path is None else self.path.with_name(self.path.name + ".partial")
        self.csv = self.path is not None and self.path.suffix.lower() == ".csv"
        self.rows = 0

    def __enter__(self) -> "PredictionWriter":
        if self.partial is None:
            self.file = sys.stdout
        else:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.partial, "w", encoding="utf-8", newline="")
        if self.csv:
            self.writer = csv.DictWriter(self.file, fieldnames=CSV_COLUMNS)
            self.writer.writeheader()
        return self

    def write(self, batch: list[Prediction]) -> None:
        for p in batch:
            if self.csv:
                self.writer.writerow(csv_row(p))
            else:
                self.file.write(json.dumps(p.as_dict(), ensure_ascii=False) + "\n")
        self.rows += len(batch)
        self.file.flush()
        if self.partial is not None:
            os.fsync(self.file.fileno())

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.partial is None:
            return
        self.file.close()
        if exc_type is None:
            os.replace(self.partial, self.path)
