import json

import pytest

from emoloom.cli import main
from emoloom.data.convert import detect_format


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("rel, fmt", [
    ("goemotions/dev.tsv", "goemotions"),
    ("empatheticdialogues/situation_level/valid.csv", "empathetic-situations"),
    ("empatheticdialogues/utterance_level/valid.csv", "empathetic-utterances"),
    ("dailydialog/convlab3_unified/dailydialog_validation.jsonl", "dailydialog"),
    ("emobank/emobank.csv", "emobank"),
])
def test_convert_every_format_on_real_rows(small_raw_root, tmp_path, rel, fmt, capsys):
    assert detect_format(small_raw_root / rel) == fmt
    out = tmp_path / "out.jsonl"
    main(["convert", str(small_raw_root / rel), str(out), "--raw-root", str(small_raw_root)])
    records = rows(out)
    assert records and all(0.0 <= r["vad_conf"] <= 1.0 and r["split"] == "dev" for r in records)
    assert "rows in" in capsys.readouterr().err
    if fmt == "emobank":          # gold VAD scaled from 1-5, no labels
        assert all(r["labels"] == [] and 0 <= r["vad"]["v"] <= 1 for r in records)
    else:
        assert all(r["labels"] for r in records)


def test_convert_reports_missing_lexicon_and_unknown_csv(tmp_path, small_raw_root):
    with pytest.raises(SystemExit, match="missing raw file: .*NRC-VAD-Lexicon.txt"):
        main(["convert", str(small_raw_root / "goemotions/dev.tsv"), str(tmp_path / "o.jsonl"),
              "--raw-root", str(tmp_path)])
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit, match="odd.csv:1: unknown CSV header"):
        main(["convert", str(odd), str(tmp_path / "o.jsonl"), "--raw-root", str(small_raw_root)])


def test_convert_without_weak_vad(small_raw_root, tmp_path):
    out = tmp_path / "out.jsonl"
    main(["convert", str(small_raw_root / "goemotions/dev.tsv"), str(out), "--no-weak-vad", "--split", "test"])
    assert all(r["vad"] is None and r["id"].startswith("goemotions:test:") for r in rows(out))
