"""The inputs of `emoloom predict`: texts on the command line, or a file of plain text (one per line), CSV (a `text`
column; optional `id` and `context` columns) or record JSONL (`text`, optional `id` and `context`), `-` for stdin.

A row that cannot be read becomes an `InputRow` with an error status (empty_text, undecodable, missing_text,
bad_json) instead of an exception, so one bad line never costs the rows around it. A file that is the wrong kind
altogether (a CSV without a `text` column) stops before any row is predicted, naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from emoloom.core.errors import DataError
from emoloom.core.text import undecodable

INPUT_FORMATS = ("text", "csv", "jsonl")
INPUT_ERRORS = ("empty_text", "undecodable", "missing_text", "bad_json")


@dataclass
class InputRow:
    id: str                                          # the row's id column, else its position ("3", "file.txt:3")
    text: str | None
    context: list[str] = field(default_factory=list)  # earlier dialogue turns, oldest first
    error: str | None = None                         # one of INPUT_ERRORS, or None


def rows_from_texts(texts: Sequence[str], context: Sequence[str] = ()) -> list[InputRow]:
    """Texts given in code or on the command line (ids 1..n), each with the same context turns."""
    return [_checked(InputRow(str(i), text, list(context))) for i, text in enumerate(texts, 1)]


def input_format(path: str, fmt: str | None = None) -> str:
    """The explicit format, else by extension: .csv, .jsonl/.json, anything else (and stdin) plain text."""
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower()
    return "csv" if suffix == ".csv" else "jsonl" if suffix in (".jsonl", ".json") else "text"


def read_inputs(path: str, fmt: str | None = None) -> Iterator[InputRow]:
    """The rows of `path` (`-`: stdin) in order, per-row problems as error statuses."""
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    name = "stdin" if path == "-" else str(path)
    reader = {"text": _text_rows, "csv": _csv_rows, "jsonl": _jsonl_rows}[input_format(path, fmt)]
    yield from reader(data, name)


def _checked(row: InputRow) -> InputRow:
    if row.error is None and (row.text is None or not row.text.strip()):
        row.error = "missing_text" if row.text is None else "empty_text"
    return row


def _lines(data: bytes) -> Iterator[tuple[int, str | None]]:
    """(line number, text or None when its bytes are not UTF-8) of every physical line."""
    for n, raw in enumerate(data.splitlines(), 1):
        try:
            yield n, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield n, None


def _text_rows(data: bytes, name: str) -> Iterator[InputRow]:
    for n, line in _lines(data.removeprefix(b"\xef\xbb\xbf")):
        yield _checked(InputRow(str(n), line, error=None if line is not None else "undecodable"))


def _turns(value) -> list[str]:
    turns = value if isinstance(value, list) else str(value or "").split("\n")
    return [str(t) for t in turns if str(t).strip()]


def _jsonl_rows(data: bytes, name: str) -> Iterator[InputRow]:
    for n, line in _lines(data):
        if line is None:
            yield InputRow(str(n), None, error="undecodable")
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            yield InputRow(str(n), None, error="bad_json")
            continue
        text = obj.get("text")
        yield _checked(InputRow(str(obj.get("id", n)), text if isinstance(text, str) or text is None else str(text),
                                _turns(obj.get("context"))))


def _csv_rows(data: bytes, name: str) -> Iterator[InputRow]:
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [c.strip().lower() for c in next(reader, [])]
    if "text" not in header:
        raise DataError(f"{name}:1: a CSV input needs a `text` column; the header is {header}")
    col = {k: header.index(k) for k in ("text", "id", "context") if k in header}
    for fields in reader:
        n = reader.line_num
        get = (lambda k: fields[col[k]] if k in col and col[k] < len(fields) else None)
        text = get("text")
        if not fields:
            yield InputRow(str(n), "", error="empty_text")
        elif undecodable(*fields):
            yield InputRow(str(n), None, error="undecodable")
        else:
            yield _checked(InputRow(get("id") or str(n), text, _turns(get("context"))))
