"""Bad-input policy: damaged rows are skipped and counted; wrong files stop with file:line."""

import pytest

from emoloom.core.errors import DataError
from emoloom.data.corpora import (
    FileReport,
    ReadOptions,
    check_bad_fraction,
    read_dailydialog,
    read_emobank,
    read_empathetic_situations,
    read_empathetic_utterances,
    read_goemotions,
)


def read(reader, path, *args):
    report = FileReport(str(path))
    return list(reader(path, report, *args)), report


def test_goemotions_skips_bad_rows_and_counts_them(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"I love this so much\t18\tid1\n"
                     b"only two\tcolumns\n"
                     b"bad bytes \xff\xfe here\t2\tid3\n"
                     b"Thanks a lot friend\t15,18\tid4\n")
    rows, report = read(read_goemotions, path)
    assert [(r.key, r.labels) for r in rows] == [("id1", ["love"]), ("id4", ["gratitude", "love"])]
    assert report.rows_in == 4 and report.dropped == {"bad_columns": 1, "undecodable": 1}


def test_goemotions_bad_label_id_stops_with_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("fine text here\t3\ta\nanother text here\t28\tb\n")
    with pytest.raises(DataError, match=r"train.tsv:2: label id '28' is not in 0..27"):
        read(read_goemotions, path)


def test_empathetic_situations(tmp_path, raw_root):
    path = tmp_path / "train.csv"
    path.write_text('text,aug_text,label\n"i was so happy_comma_ truly",x,6\nshort,row\n')
    rows, report = read(read_empathetic_situations, path, raw_root / "empatheticdialogues" / "labels.txt")
    assert rows[0].text == "i was so happy, truly" and rows[0].labels == ["joy"]   # 6 = joyful
    assert report.dropped == {"bad_columns": 1}


def test_empathetic_header_mismatch_stops(tmp_path, raw_root):
    path = tmp_path / "train.csv"
    path.write_text("sentence,label\nhello there friend,3\n")
    with pytest.raises(DataError, match=r"train.csv:1: expected header text,aug_text,label"):
        read(read_empathetic_situations, path, raw_root / "empatheticdialogues" / "labels.txt")


def test_empathetic_utterances_carry_context(tmp_path, raw_root):
    path = tmp_path / "valid.csv"
    path.write_text("conv_id,utterance_idx,prompt,utterance,label\n"
                    "c1,1,p,first turn here,2\nc1,2,p,second turn here,2\nc1,3,p,third turn here,2\n"
                    "c2,1,p,other talk here,2\n")
    rows, _ = read(read_empathetic_utterances, path, raw_root / "empatheticdialogues" / "labels.txt", 1)
    assert [r.context for r in rows] == ["", "first turn here", "second turn here", ""]
    assert rows[0].labels == ["fear"] and rows[1].key == "c1:2"


def test_dailydialog_splits_dialogues_and_skips_damaged_ones(tmp_path):
    path = tmp_path / "dd.jsonl"
    path.write_text('{"id": "d1", "utterances": ["Hi there you", "I am so happy today", "Great news"], '
                    '"emotion": [0, 4, 6]}\n'
                    '{"id": "d2", "utterances": ["a b c", "d e f"], "emotion": [0]}\n'
                    '{"id": "d3", "utterances": ["broken json"\n')
    rows, report = read(read_dailydialog, path, 2)
    assert [(r.key, r.labels) for r in rows] == [("d1:0", ["neutral"]), ("d1:1", ["joy"]), ("d1:2", ["surprise"])]
    assert rows[2].context == "Hi there you\nI am so happy today"
    assert report.dropped == {"turn_label_mismatch": 2, "bad_json": 1} and report.rows_in == 6


def test_dailydialog_bad_emotion_id_stops(tmp_path):
    path = tmp_path / "dd.jsonl"
    path.write_text('{"id": "d1", "utterances": ["x y z"], "emotion": [9]}\n')
    with pytest.raises(DataError, match=r"dd.jsonl:1: label id '9' is not in 0..6"):
        read(read_dailydialog, path, 2)


def test_emobank_scales_vad_and_rejects_off_scale(tmp_path):
    path = tmp_path / "emobank.csv"
    path.write_text("id,split,V,A,D,text\nx1,train,5.0,1.0,3.0,What a lovely day\n")
    rows, _ = read(read_emobank, path)
    assert rows[0].vad == {"v": 1.0, "a": 0.0, "d": 0.5} and rows[0].labels == []
    path.write_text("id,split,V,A,D,text\nx1,train,7.0,1.0,3.0,What a lovely day\n")
    with pytest.raises(DataError, match=r"emobank.csv:2: V/A/D \[7.0, 1.0, 3.0\] outside"):
        read(read_emobank, path)


def test_too_many_bad_rows_stop_the_file(tmp_path):
    report = FileReport("x.tsv", rows_in=100)
    report.dropped.update({"bad_columns": 2, "duplicate_text": 50})       # duplicates are not malformed rows
    check_bad_fraction(report, 0.02)
    report.dropped["undecodable"] += 1
    with pytest.raises(DataError, match="3 of 100 rows are malformed"):
        check_bad_fraction(report, 0.02)


def test_ed_formats_need_labels_file():
    with pytest.raises(DataError, match="labels.txt"):
        ReadOptions().ed_labels_file()


def test_an_unclosed_quote_loses_no_row_silently(tmp_path, raw_root):
    """csv would read the lines after an unclosed quote as one field: every swallowed line is counted as lost."""
    path = tmp_path / "train.csv"
    path.write_text('text,aug_text,label\n'
                    'I was so happy today,x,1\n'
                    '"I forgot the closing quote,x,2\n'
                    'this row vanishes into the quote,x,3\n'
                    'and so does this one,x,4\n')
    rows, report = read(read_empathetic_situations, path, raw_root / "empatheticdialogues/labels.txt")
    assert [r.key for r in rows] == ["row2"]
    assert report.rows_in == 4 and report.dropped == {"unclosed_quote": 3}
    with pytest.raises(DataError, match="3 of 4 rows are malformed"):
        check_bad_fraction(report, 0.01)
