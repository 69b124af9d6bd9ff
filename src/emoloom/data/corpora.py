"""Readers for the raw corpora: each yields `RawRow`s in the canonical label space.

Bad input policy (docs/data.md, "Bad input"): a row that is damaged on its own (wrong column count, undecodable bytes,
a broken JSON line, utterance/label count mismatch) is skipped and counted under a reason in `FileReport.dropped`;
an error that means the whole file is the wrong one (unexpected header, a label id outside the label set, a VAD score
off its scale) stops with `DataError` naming file:line. So does a file where more than `max_bad_frac` of rows are bad.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from emoloom.core.errors import DataError
from emoloom.core.labels import DAILYDIALOG_TAGS, LABELS, load_mapping, sort_labels
from emoloom.core.text import clean_text, undecodable

ED_COMMA = "_comma_"


@dataclass
class RawRow:
    key: str                      # natural key inside the file (comment id, row number, dialogue/turn)
    text: str
    labels: list[str]
    context: str = ""
    vad: dict | None = None       # gold VAD in [0,1] where the corpus has it (EmoBank)


@dataclass
class FileReport:
    path: str
    rows_in: int = 0
    dropped: Counter = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.dropped[reason] += 1


def _decode(path: Path) -> str:
    """Whole file as text; undecodable bytes survive as lone surrogates so the bad rows can be skipped one by one."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


def _label_id(raw: str, n: int, where: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value < n:
        raise DataError(f"{where}: label id {raw!r} is not in 0..{n - 1} (wrong file or label list?)")
    return value


def _csv_rows(path: Path, header: list[str], report: FileReport) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a CSV file whose first row must be `header`; bad rows are skipped and counted."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    first = next(reader, None)
    if first is None or [c.strip() for c in first] != header:
        raise DataError(f"{path}:1: expected header {','.join(header)}, got {first}")
    last = reader.line_num
    for fields in reader:
        lineno, span, last = reader.line_num, reader.line_num - last, reader.line_num
        report.rows_in += max(span, 1)
        if span > 1:                   # an unclosed quote swallowed the following lines: every one of them is lost
            report.dropped["unclosed_quote"] += span
        elif len(fields) != len(header):
            report.skip("bad_columns")
        elif undecodable(*fields):
            report.skip("undecodable")
        else:
            yield lineno, fields


def read_goemotions(path: Path, report: FileReport) -> Iterator[RawRow]:
    """GoEmotions TSV: text, comma-separated label ids, comment id (no header)."""
    for lineno, line in enumerate(_decode(path).splitlines(), 1):
        report.rows_in += 1
        fields = line.split("\t")
        if len(fields) != 3:
            report.skip("bad_columns")
            continue
        if undecodable(line):
            report.skip("undecodable")
            continue
        text, ids, key = fields
        labels = [LABELS[_label_id(i, len(LABELS), f"{path}:{lineno}")] for i in ids.split(",")]
        yield RawRow(key=key, text=clean_text(text), labels=sort_labels(labels))


def _ed_mapping(labels_file: Path) -> tuple[list[str], dict]:
    names = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return names, load_mapping("empathetic", names)


def read_empathetic_situations(path: Path, report: FileReport, labels_file: Path) -> Iterator[RawRow]:
    """ED situation prompts (text, aug_text, label); the paraphrase column is not ED's and is ignored."""
    names, mapping = _ed_mapping(labels_file)
    for lineno, (text, _aug, label) in _csv_rows(path, ["text", "aug_text", "label"], report):
        name = names[_label_id(label, len(names), f"{path}:{lineno}")]
        yield RawRow(key=f"row{lineno}", text=clean_text(text.replace(ED_COMMA, ",")), labels=list(mapping[name]))


def read_empathetic_utterances(path: Path, report: FileReport, labels_file: Path,
                               context_turns: int) -> Iterator[RawRow]:
    """ED labelled utterances; the conversation's label goes to every turn, earlier turns become the context."""
    names, mapping = _ed_mapping(labels_file)
    history: dict[str, list[str]] = {}
    for lineno, (conv, idx, _prompt, utterance, label) in _csv_rows(
            path, ["conv_id", "utterance_idx", "prompt", "utterance", "label"], report):
        name = names[_label_id(label, len(names), f"{path}:{lineno}")]
        text = clean_text(utterance.replace(ED_COMMA, ","))
        turns = history.setdefault(conv, [])
        context = "\n".join(turns[-context_turns:]) if context_turns else ""
        turns.append(text)
        yield RawRow(key=f"{conv}:{idx}", text=text, labels=list(mapping[name]), context=context)


def read_dailydialog(path: Path, report: FileReport, context_turns: int) -> Iterator[RawRow]:
    """ConvLab-unified DailyDialog JSONL: one dialogue a line, split into utterances with the previous turns as context."""
    mapping = load_mapping("dailydialog", DAILYDIALOG_TAGS)
    for lineno, line in enumerate(_decode(path).splitlines(), 1):
        if not line.strip():
            continue
        if undecodable(line):
            report.rows_in += 1
            report.skip("undecodable")
            continue
        try:
            dialogue = json.loads(line)
            utterances, emotions, dialogue_id = dialogue["utterances"], dialogue["emotion"], dialogue["id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            report.rows_in += 1
            report.skip("bad_json")
            continue
        report.rows_in += len(utterances)
        if len(utterances) != len(emotions):
            report.dropped["turn_label_mismatch"] += len(utterances)
            continue
        turns: list[str] = []
        for turn, (utterance, emotion) in enumerate(zip(utterances, emotions)):
            tag = DAILYDIALOG_TAGS[_label_id(str(emotion), len(DAILYDIALOG_TAGS), f"{path}:{lineno}")]
            text = clean_text(utterance)
            context = "\n".join(turns[-context_turns:]) if context_turns else ""
            turns.append(text)
            yield RawRow(key=f"{dialogue_id}:{turn}", text=text, labels=list(mapping[tag]), context=context)


def read_emobank(path: Path, report: FileReport) -> Iterator[RawRow]:
    """EmoBank CSV (id, split, V, A, D, text) with VAD on 1-5, scaled to [0,1] as (x-1)/4; no emotion labels."""
    for lineno, (key, _split, v, a, d, text) in _csv_rows(path, ["id", "split", "V", "A", "D", "text"], report):
        try:
            scores = [float(x) for x in (v, a, d)]
        except ValueError:
            raise DataError(f"{path}:{lineno}: V/A/D must be numbers, got {v!r}, {a!r}, {d!r}") from None
        if not all(1.0 <= s <= 5.0 for s in scores):
            raise DataError(f"{path}:{lineno}: V/A/D {scores} outside EmoBank's 1-5 scale")
        vad = {k: round((s - 1.0) / 4.0, 4) for k, s in zip("vad", scores)}
        yield RawRow(key=key, text=clean_text(text), labels=[], vad=vad)


LABELLED_CSV_HEADERS = (["text", "labels"], ["text", "labels", "v", "a", "d"])


def read_labelled_csv(path: Path, report: FileReport) -> Iterator[RawRow]:
    """Any labelled CSV in the 28-label space: header `text,labels` or `text,labels,v,a,d`; labels separated by `;`,
    `|`, `,` or spaces (empty: no label); v, a, d in [0, 1] (empty: none, weak VAD fills them). A label outside the
    space or a VAD value off [0, 1] stops with file:line."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        first = [c.strip().lower() for c in next(csv.reader(f), [])]
    header = next((h for h in LABELLED_CSV_HEADERS if first == h), None)
    if header is None:
        raise DataError(f"{path}:1: expected the header text,labels or text,labels,v,a,d, got {first}")
    for lineno, fields in _csv_rows(path, header, report):
        where = f"{path}:{lineno}"
        labels = [x for x in re.split(r"[;|,\s]+", fields[1].strip().lower()) if x]
        unknown = [x for x in labels if x not in LABELS]
        if unknown:
            raise DataError(f"{where}: unknown label(s) {unknown}; labels must be in the 28-label space ({LABELS[0]}, "
                            f"{LABELS[1]}, ..., {LABELS[-1]})")
        yield RawRow(key=str(lineno), text=clean_text(fields[0]), labels=sort_labels(labels),
                     vad=_unit_vad(fields[2:], where))


def _unit_vad(cells: list[str], where: str) -> dict | None:
    if not any(c.strip() for c in cells):
        return None
    try:
        scores = [float(c) for c in cells]
    except ValueError:
        raise DataError(f"{where}: v, a, d must be numbers in [0, 1] (or all empty), got {cells}") from None
    if not all(0.0 <= x <= 1.0 for x in scores):
        raise DataError(f"{where}: v, a, d {scores} outside [0, 1]")
    return dict(zip("vad", scores))


def verified(rows: Iterable, report: FileReport, max_bad_frac: float) -> Iterator:
    """Pass rows through; once they are exhausted (before an atomic write moves its output into place), stop if
    too many were malformed, or if none was kept at all."""
    kept = 0
    for row in rows:
        kept += 1
        yield row
    check_bad_fraction(report, max_bad_frac)
    if not kept:
        raise DataError(f"{report.path}: no row kept ({report.rows_in} read, dropped {dict(report.dropped) or 'none'}); "
                        f"is the file empty or the wrong one?")


def check_bad_fraction(report: FileReport, max_bad_frac: float) -> None:
    """Stop when too many rows of one file were skipped: the file is probably not what the layout says."""
    bad = sum(n for reason, n in report.dropped.items()
              if reason in {"bad_columns", "undecodable", "bad_json", "turn_label_mismatch", "unclosed_quote"})
    if report.rows_in and bad > max_bad_frac * report.rows_in:
        raise DataError(f"{report.path}: {bad} of {report.rows_in} rows are malformed "
                        f"({dict(report.dropped)}), over the limit of {max_bad_frac:.1%}; is it the right file?")


@dataclass(frozen=True)
class ReadOptions:
    context_turns: int = 2            # dialogue turns kept before an utterance as its context
    ed_labels: Path | None = None     # EmpatheticDialogues labels.txt (line i = label id i)

    def ed_labels_file(self) -> Path:
        if self.ed_labels is None:
            raise DataError("EmpatheticDialogues files need labels.txt (line i = label id i): pass its path")
        return self.ed_labels


# Every supported raw format, by name: the `prepare` stage and the `emoloom convert` CLI both read through this table.
FORMATS: dict[str, Callable[[Path, FileReport, ReadOptions], Iterator[RawRow]]] = {
    "goemotions": lambda path, report, opt: read_goemotions(path, report),
    "empathetic-situations": lambda path, report, opt: read_empathetic_situations(path, report, opt.ed_labels_file()),
    "empathetic-utterances": lambda path, report, opt: read_empathetic_utterances(
        path, report, opt.ed_labels_file(), opt.context_turns),
    "dailydialog": lambda path, report, opt: read_dailydialog(path, report, opt.context_turns),
    "emobank": lambda path, report, opt: read_emobank(path, report),
    "labelled-csv": lambda path, report, opt: read_labelled_csv(path, report),
}
