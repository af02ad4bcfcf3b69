"""Reading records from a file for the CLI and the SDK: smoke inputs of a preview, business outcomes.

JSON (a list of records, or an object holding one under ``key``), JSON Lines (one record per line, ``.jsonl`` or
``.ndjson``) or CSV (a header row; numbers become numbers, empty cells are missing). A problem names the file
and, when it can, the line.

>>> read_records("outcomes.csv", key="outcomes", field="outcomes")  # doctest: +SKIP
[{'key': 'user-1', 'value': 1}, ...]
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError

__all__ = ["read_records"]

#: records a file may hold: beyond this a file is a data set, not a handful of requests or outcomes
MAX_RECORDS = 100_000


def _scalar(text: str) -> Any:
    """A CSV cell: an int, a float, or the text itself; empty is missing."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _read_csv(text: str) -> list[Any]:
    reader = csv.DictReader(text.splitlines())
    rows: list[Any] = []
    for row in reader:
        cells = {k: _scalar(v) for k, v in row.items() if k is not None and v is not None}
        rows.append({k: v for k, v in cells.items() if v is not None})
    return rows


def _read_jsonl(text: str, path: Path, field: str) -> list[Any]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{field}: {path} line {number}: not valid JSON: {exc.msg}", field=field) from exc
    return rows


def read_records(path: str | Path, *, key: str, field: str) -> list[Any]:
    """The records in ``path`` (by its suffix: ``.csv``, ``.jsonl``/``.ndjson``, else JSON), at least one.

    A JSON object holding a list under ``key`` (``{"outcomes": [...]}``, ``{"instances": [...]}``) is read as
    that list. Problems raise :class:`~mlpilot.errors.InvalidInputError` naming ``field``.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{field}: cannot read {file}: {exc}", field=field) from exc
    suffix = file.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(text)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _read_jsonl(text, file, field)
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{field}: {file} is not valid JSON (line {exc.lineno}: {exc.msg}); CSV files end in .csv, "
                "JSON Lines in .jsonl",
                field=field,
            ) from exc
        if isinstance(doc, dict) and isinstance(doc.get(key), list):
            doc = doc[key]
        if not isinstance(doc, list):
            raise InvalidInputError(f"{field}: {file}: expected a JSON list, or an object with {key!r}", field=field)
        rows = doc
    if not rows:
        raise InvalidInputError(f"{field}: {file} holds no records", field=field)
    if len(rows) > MAX_RECORDS:
        raise InvalidInputError(f"{field}: {file} holds {len(rows)} records; at most {MAX_RECORDS}", field=field)
    return rows
