"""Reading batch files: one row per input record, each with its text or its error.

CSV (records as :func:`rnnops.core.csv_records.csv_records` delimits them), Parquet and
JSON Lines with a text column. A record that cannot be scored keeps its place with the
reason; nothing here decides how documents are scored.
"""

from __future__ import annotations

import codecs
import functools
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from rnnops.core.csv_records import CSV_RECORD_MODES, clip, control_char, csv_records, unicode_bom

INPUT_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


# Lone surrogates: bytes that were not UTF-8 (decoded with surrogateescape), or \\uD800-style
# escapes in JSON; neither can be written as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


class BatchInputError(ValueError):
    """The input as a whole cannot be scored: missing file, unknown format, no text column."""


def file_format(path: str | Path, formats: dict[str, str], role: str) -> str:
    """The format ``formats`` gives ``path``'s suffix; ``role`` (input, output) names it."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise BatchInputError(
            f"{path}: unknown {role} format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(formats)}"
        )
    return formats[suffix]


def input_format(path: str | Path) -> str:
    return file_format(path, INPUT_FORMATS, "input")


def check_csv_records(mode: str) -> str:
    if mode not in CSV_RECORD_MODES:
        raise BatchInputError(
            f"csv_records must be one of {', '.join(CSV_RECORD_MODES)}, not {clip(mode)}"
        )
    return mode


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def text_problem(value: Any) -> str | None:
    """Why ``value`` cannot be scored as a document, or None when it can."""
    if is_missing(value):
        return "missing text"
    if not isinstance(value, str):
        return f"text is {_type_name(value)}, not a string"
    if not value.strip():
        return "empty text"
    if _SURROGATE.search(value):
        # bytes that were not UTF-8 (read as surrogates), or a lone \\uD800 escape in JSON
        return "text is not valid UTF-8"
    found = control_char(value)
    if found is not None:
        return f"text holds control character {found[1]} (at character {found[0] + 1})"
    return None


def _decodable(text: str) -> str:
    """``text`` with bytes that were not UTF-8 (and lone surrogates) shown as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _refuse_other_unicode(path: Path, data: bytes) -> None:
    bom = unicode_bom(data)
    if bom:
        raise BatchInputError(
            f"{path} is {bom} (it starts with a {bom} byte order mark), not UTF-8: "
            "re-save it as UTF-8"
        )


def _read_csv(
    path: Path, text_column: str, id_column: str | None, csv_records_mode: str = "auto"
) -> list[dict[str, Any]]:
    data = path.read_bytes()
    _refuse_other_unicode(path, data)
    # surrogateescape: a bad byte spoils its own row, not the whole file.
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    header, found = csv_records(text, csv_records_mode)
    if header is None:
        raise BatchInputError(f"{path} is empty (no header row)")
    if header.problem:
        raise BatchInputError(
            f"{path}, line {header.line}: the header row is malformed: {header.problem}"
        )
    names = [_decodable(name) for name in header.fields]
    for column in filter(None, dict.fromkeys((text_column, id_column))):
        if column not in names:
            shown = ", ".join(map(clip, names[:20])) + (" ..." if len(names) > 20 else "")
            raise BatchInputError(f"{path} has no column {clip(column)} (columns: {shown})")
        if names.count(column) > 1:
            raise BatchInputError(
                f"{path}, line {header.line}: column {clip(column)} appears more than once in "
                "the header row"
            )
    text_at = names.index(text_column)
    id_at = names.index(id_column) if id_column else None
    records = []
    for row, record in enumerate(found):
        out = {"row": row, "id": None, "text": None, "error": None}
        fields = record.fields
        if fields is not None and id_at is not None and id_at < len(fields):
            out["id"] = fields[id_at]
        if fields == ():
            out["error"] = f"line {record.line}: blank line"
        elif record.problem is not None:
            out["error"] = f"line {record.line}: {record.problem}"
        else:
            out["text"] = fields[text_at]
            problem = text_problem(fields[text_at])
            out["error"] = f"line {record.line}: {problem}" if problem else None
        records.append(out)
    return records


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(keys: frozenset[str], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a text or id field given twice is ambiguous (JSON keeps the last)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key in keys:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _read_jsonl(path: Path, text_column: str, id_column: str | None) -> list[dict[str, Any]]:
    data = path.read_bytes()
    _refuse_other_unicode(path, data)
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the newline that ends the last line starts no record
        lines.pop()
    records, has_text, has_object = [], False, False
    hook = functools.partial(_refuse_duplicates, frozenset(filter(None, (text_column, id_column))))
    for row, raw in enumerate(lines):
        line_no = row + 1
        record = {"row": row, "id": None, "text": None, "error": None}
        records.append(record)
        if row == 0:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            record["error"] = f"line {line_no}: blank line"
            continue
        try:
            obj = json.loads(raw.decode("utf-8"), object_pairs_hook=hook)
        except UnicodeDecodeError:
            record["error"] = f"line {line_no}: not valid UTF-8"
            continue
        except _DuplicateKey as exc:
            record["error"] = f"line {line_no}: field {clip(str(exc))} appears more than once"
            continue
        except (ValueError, RecursionError):
            record["error"] = f"line {line_no}: not valid JSON"
            continue
        if not isinstance(obj, dict):
            record["error"] = f"line {line_no}: {_type_name(obj)}, not a JSON object"
            continue
        has_object = True
        if id_column:
            record["id"] = obj.get(id_column)
        if text_column not in obj:
            record["error"] = f"line {line_no}: no {clip(text_column)} field"
            continue
        has_text = True
        record["text"] = obj[text_column]
        problem = text_problem(obj[text_column])
        record["error"] = f"line {line_no}: {problem}" if problem else None
    if has_object and not has_text:
        raise BatchInputError(
            f"{path}: no record has a {clip(text_column)} field (set text_column)"
        )
    if records and not has_object:
        raise BatchInputError(
            f"{path} is not JSON Lines: none of its {len(records)} lines holds a JSON object"
        )
    return records


def _read_parquet(path: Path, text_column: str, id_column: str | None) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        for column in filter(None, (text_column, id_column)):
            if column not in names:
                shown = ", ".join(map(clip, names[:20])) + (" ..." if len(names) > 20 else "")
                raise BatchInputError(f"{path} has no column {clip(column)} (columns: {shown})")
        columns = list(dict.fromkeys(filter(None, (text_column, id_column))))
        table = pq.read_table(path, columns=columns)
        texts = table.column(text_column).to_pylist()
        ids = table.column(id_column).to_pylist() if id_column else [None] * len(texts)
    except BatchInputError:
        raise
    except Exception as exc:  # pyarrow's errors share no base class
        raise BatchInputError(
            f"{path} is not a readable Parquet file ({type(exc).__name__}: {clip(str(exc), 120)})"
        ) from None
    return [
        {"row": i, "id": ids[i], "text": text, "error": text_problem(text)}
        for i, text in enumerate(texts)
    ]


def read_documents(
    path: str | Path,
    text_column: str = "text",
    id_column: str | None = None,
    csv_records: str = "auto",
) -> pd.DataFrame:
    """One row per input record: ``row`` (0-based), ``id``, ``text`` and ``error`` (or None).

    A record is a line of JSON Lines, a row of Parquet, a record of CSV as
    :func:`rnnops.core.csv_records.csv_records` delimits it (``csv_records``: ``auto``, ``lines`` or
    ``quoted``). A malformed record is a row with its error; it never merges into the next.
    """
    path = Path(path)
    fmt = input_format(path)
    check_csv_records(csv_records)
    if not path.is_file():
        raise BatchInputError(f"input file {path} not found")
    try:
        if fmt == "csv":
            records = _read_csv(path, text_column, id_column, csv_records)
        elif fmt == "jsonl":
            records = _read_jsonl(path, text_column, id_column)
        else:
            records = _read_parquet(path, text_column, id_column)
    except OSError as exc:
        raise BatchInputError(
            f"input file {path} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    for record in records:
        if record["error"] is not None:
            record["text"] = None  # not scored; and undecodable bytes cannot be stored
        if isinstance(record["id"], str):
            record["id"] = _decodable(record["id"])
    # object columns keep None as None (pandas' string dtype would make it NaN)
    return pd.DataFrame(
        {
            "row": pd.Series([r["row"] for r in records], dtype="int64"),
            **{
                key: pd.Series([r[key] for r in records], dtype=object)
                for key in ("id", "text", "error")
            },
        }
    )


def is_missing(value: Any) -> bool:
    """None or NaN: how pandas and Parquet spell an empty cell."""
    return value is None or (isinstance(value, float) and math.isnan(value))
