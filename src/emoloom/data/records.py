"""The one record schema shared by every corpus, QC filtering and de-duplication.

    {"id", "text", "context", "labels": [...], "vad": {"v","a","d"} | null, "vad_conf": float | null,
     "vad_cues": [...], "source", "split", "qc_flags": {"n_tokens", "len_ok", "lang", "garbled"}}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from typing import Iterable, Iterator

from emoloom.core.errors import DataError
from emoloom.core.labels import LABEL_INDEX
from emoloom.core.text import normalized_for_dedup, qc_flags
from emoloom.data.corpora import RawRow


def record_id(source: str, split: str, key: str) -> str:
    """Deterministic id from the corpus, split and the row's natural key."""
    return f"{source}:{split}:{key}"


def dedup_key(text: str, rid: str) -> str:
    """The paper's de-duplication key, sha1(text || id): the same record read twice collapses to one."""
    return hashlib.sha1(f"{text}\x00{rid}".encode("utf-8")).hexdigest()


class Deduper:
    """Drops repeated records (sha1(text || id)) and repeated texts within one corpus (so no text sits in two splits)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.texts: set[str] = set()

    def reason(self, text: str, rid: str) -> str | None:
        key, norm = dedup_key(text, rid), normalized_for_dedup(text)
        if key in self.keys:
            return "duplicate_record"
        self.keys.add(key)
        if norm in self.texts:
            return "duplicate_text"
        self.texts.add(norm)
        return None


def make_record(ex: RawRow, source: str, split: str, flags: dict) -> dict:
    return {"id": record_id(source, split, ex.key), "text": ex.text, "context": ex.context, "labels": ex.labels,
            "vad": ex.vad, "vad_conf": 1.0 if ex.vad else None, "vad_cues": [], "source": source, "split": split,
            "qc_flags": flags}


def filter_records(examples: Iterable[RawRow], source: str, split: str, dropped: Counter, deduper: Deduper,
                   min_tokens: int, max_tokens: int) -> Iterator[dict]:
    """Records that pass QC and de-duplication; every drop is counted in `dropped` under its reason."""
    for ex in examples:
        flags, reason = qc_flags(ex.text, min_tokens, max_tokens)
        rid = record_id(source, split, ex.key)
        reason = reason or deduper.reason(ex.text, rid)
        if reason:
            dropped[reason] += 1
            continue
        yield make_record(ex, source, split, flags)


def check_record(rec, where: str) -> dict:
    """`rec` if it follows the record schema as far as scoring needs (id, text, labels in the 28-label space, VAD in
    [0, 1] or null); else DataError naming `where` (file:line) and what was expected."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object (a record), got {type(rec).__name__}")
    missing = [k for k in ("id", "text", "labels") if k not in rec]
    if missing:
        raise DataError(f"{where}: record without {', '.join(missing)} (a record needs id, text and labels; "
                        f"`emoloom convert` makes them from raw files)")
    if not isinstance(rec["text"], str) or not rec["text"].strip():
        raise DataError(f"{where}: text must be a non-empty string, got {rec['text']!r}")
    labels = rec["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{where}: labels must be a list of label names, got {labels!r}")
    unknown = [x for x in labels if x not in LABEL_INDEX]
    if unknown:
        raise DataError(f"{where}: unknown label(s) {unknown}: gold labels must be in the 28-label GoEmotions space "
                        f"(map other label sets first, docs/data.md)")
    vad = rec.get("vad")
    if vad is not None and not (isinstance(vad, dict) and all(
            isinstance(vad.get(k), (int, float)) and not isinstance(vad.get(k), bool) and 0 <= vad[k] <= 1
            for k in "vad")):
        raise DataError(f"{where}: vad must be null or {{\"v\", \"a\", \"d\"}} numbers in [0, 1], got {vad!r}")
    return rec


def read_records(path: str | os.PathLike) -> list[dict]:
    """Every record of a JSONL file, each checked by `check_record` (errors name file:line)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not a JSON object ({e.msg})") from None
            out.append(check_record(rec, f"{path}:{lineno}"))
    return out
