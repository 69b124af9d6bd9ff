"""The one record schema shared by every corpus, QC filtering and de-duplication.

    {"id", "text", "context", "labels": [...], "vad": {"v","a","d"} | null, "vad_conf": float | null,
     "vad_cues": [...], "source", "split", "qc_flags": {"n_tokens", "len_ok", "lang", "garbled"}}
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable, Iterator

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
