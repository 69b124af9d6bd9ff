import pytest

from emoloom.core import labels
from emoloom.core.labels import LABELS, load_mapping, sort_labels, to_ekman


def test_canonical_labels_match_goemotions_file(raw_root):
    names = (raw_root / "goemotions" / "emotions.txt").read_text().split()
    assert tuple(names) == LABELS and LABELS[-1] == "neutral"


def test_empathetic_mapping_covers_all_32_labels_with_canonical_targets(raw_root):
    ed = (raw_root / "empatheticdialogues" / "labels.txt").read_text().split()
    mapping = load_mapping("empathetic", ed)
    assert len(ed) == 32 and set(mapping) == set(ed)
    assert all(t in labels.LABEL_INDEX for targets in mapping.values() for t in targets)
    assert mapping["grateful"] == ("gratitude",) and mapping["terrified"] == ("fear",)
    assert mapping["nostalgic"] == ("sadness", "joy")          # a commented fuzzy multi-label choice


def test_dailydialog_mapping():
    mapping = load_mapping("dailydialog", labels.DAILYDIALOG_TAGS)
    assert mapping["no_emotion"] == ("neutral",) and mapping["happiness"] == ("joy",)


def test_mapping_missing_source_label_is_an_error():
    with pytest.raises(ValueError, match="no mapping for source labels"):
        load_mapping("dailydialog", list(labels.DAILYDIALOG_TAGS) + ["contempt"])


def test_bad_mapping_line_names_file_and_line(monkeypatch):
    class FakeFiles:
        def joinpath(self, *parts):
            return self

        def read_text(self, encoding):
            return "# comment\nanger\tanger\nhappiness\tjoyful   # not a GoEmotions label\n"

    monkeypatch.setattr(labels.resources, "files", lambda pkg: FakeFiles())
    with pytest.raises(ValueError, match=r"dailydialog_to_goemotions.tsv:3: \['joyful'\]"):
        load_mapping("dailydialog", ["anger", "happiness"])


def test_sort_labels_dedups_in_canonical_order():
    assert sort_labels(["neutral", "anger", "admiration", "anger"]) == ["admiration", "anger", "neutral"]


def test_ekman_projection(raw_root):
    import json
    ekman = json.loads((raw_root / "goemotions" / "ekman_mapping.json").read_text())
    assert to_ekman(["gratitude", "annoyance", "neutral"], ekman) == ["anger", "joy", "neutral"]
    assert to_ekman(["curiosity"], ekman) == ["surprise"]
