"""`emoloom diff`: the paired bootstrap between two evaluations of the same rows."""

from __future__ import annotations

import json
import random

import pytest

from emoloom.cli import main
from emoloom.core.errors import DataError
from emoloom.core.labels import LABELS
from emoloom.inference.paired_diff import paired_diff, read_outputs

N = 120


def gold_records() -> list[dict]:
    rng = random.Random(0)
    return [{"id": f"r{i}", "text": "t", "labels": [LABELS[i % 6]],
             "vad": {k: round(rng.random(), 2) for k in "vad"}} for i in range(N)]


def outputs(records: list[dict], right: float, seed: int, decoded: int = N) -> list[dict]:
    """Rows answering the gold label on a share `right` of the rows (a wrong label elsewhere), valence near gold."""
    rng = random.Random(seed)
    rows = []
    for k, r in enumerate(records):
        label = r["labels"] if rng.random() < right else [LABELS[20]]
        answer = {"labels": label, "vad": dict(r["vad"]), "rationale": "x"}
        rows.append({"id": r["id"], "decoded": k < decoded, "raw": None, "valid": k < decoded, "failure": None,
                     "parsed": answer if k < decoded else None, "stop": "json", "n_new_tokens": 9,
                     "heads": {"labels": label, "vad": dict(r["vad"])}})
    return rows


def write(path, rows) -> None:
    path.write_text("\n".join(json.dumps(r) for r in [{"_fingerprint": {"config_hash": "x"}}] + rows) + "\n")


def by_id(rows):
    return {r["id"]: r for r in rows}


def test_a_clearly_better_run_is_ahead_and_its_interval_excludes_zero():
    records = gold_records()
    table = paired_diff(records, by_id(outputs(records, 0.1, 1)), by_id(outputs(records, 0.9, 2)), samples=200)
    f1 = table.set_index("metric").loc["macro-F1 strict"]
    lo, hi = (float(x) for x in f1["95 % interval"].strip("[]").split(","))
    assert f1["B − A"] > 0.3 and 0 < lo < hi and f1["B ahead"] == 1.0 and f1["rows"] == N


def test_identical_runs_differ_by_nothing_and_are_a_coin_flip():
    records = gold_records()
    same = by_id(outputs(records, 0.5, 1))
    table = paired_diff(records, same, same, samples=50).set_index("metric")
    assert (table["B − A"] == 0).all() and (table["B ahead"] == 0.5).all()
    assert table.loc["1−RMSE strict", "A"] == 1.0                  # VAD answered exactly


def test_only_rows_both_runs_scored_are_compared():
    records = gold_records()
    a, b = outputs(records, 0.5, 1, decoded=80), outputs(records, 0.5, 2, decoded=100)[10:]
    table = paired_diff(records, by_id(a), by_id(b), samples=20).set_index("metric")
    assert table.loc["macro-F1 strict", "rows"] == 70                # decoded in both: rows 10..79
    assert table.loc["heads macro-F1", "rows"] == N - 10


def test_the_cli_prints_the_table_and_bad_files_name_their_line(tmp_path, capsys):
    records = gold_records()
    data = tmp_path / "dev.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    write(tmp_path / "a.jsonl", outputs(records, 0.2, 1))
    write(tmp_path / "b.jsonl", outputs(records, 0.8, 2))
    main(["diff", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--data", str(data), "--samples", "30"])
    out = capsys.readouterr().out
    assert "| macro-F1 strict | 120 |" in out and "30 resamples" in out
    (tmp_path / "bad.jsonl").write_text('{"_fingerprint": {}}\n{"id": "r0", "decoded": true}\n{"id": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:3: not a JSON line"):
        read_outputs(tmp_path / "bad.jsonl")
    (tmp_path / "other.jsonl").write_text('{"labels": ["joy"]}\n')
    with pytest.raises(DataError, match=r"other.jsonl:1: not an evaluation output row"):
        read_outputs(tmp_path / "other.jsonl")
