from collections import Counter

from emoloom.data.corpora import RawRow
from emoloom.data.records import Deduper, dedup_key, filter_records


def run(examples, split, deduper):
    dropped = Counter()
    return list(filter_records(examples, "goemotions", split, dropped, deduper, 3, 128)), dropped


def test_dedup_by_record_and_by_text_dev_first():
    deduper = Deduper()
    dev, d1 = run([RawRow("a", "I love this so much", ["love"])], "dev", deduper)
    train, d2 = run([RawRow("b", "I  love this so MUCH!", ["love"]),          # same words: stays in dev only
                     RawRow("c", "What a great day today", ["joy"]),
                     RawRow("c", "What a great day today", ["joy"]),            # same record read twice
                     RawRow("d", "hi", ["neutral"])], "train", deduper)
    assert [r["id"] for r in dev] == ["goemotions:dev:a"]
    assert [r["id"] for r in train] == ["goemotions:train:c"]
    assert d2 == {"duplicate_text": 1, "duplicate_record": 1, "too_short": 1}


def test_record_schema_and_deterministic_ids():
    (rec,), _ = run([RawRow("k1", "Thank you so much", ["gratitude"], context="prev turn")], "dev", Deduper())
    assert rec == {"id": "goemotions:dev:k1", "text": "Thank you so much", "context": "prev turn",
                   "labels": ["gratitude"], "vad": None, "vad_conf": None, "vad_cues": [], "source": "goemotions",
                   "split": "dev", "qc_flags": {"n_tokens": 4, "len_ok": True, "lang": "en", "garbled": False}}
    assert dedup_key("t", "i") == dedup_key("t", "i") != dedup_key("t", "j")
