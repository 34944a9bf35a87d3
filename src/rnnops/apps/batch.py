"""Batch scoring: read documents, score them in chunks, write every row with its outcome.

The pure core of ``flows/batch_score.py`` and ``rnnops batch-score``. Inputs are CSV,
Parquet or JSON Lines with a text column. Each input record (a line of JSON Lines, a row
of Parquet, a CSV record as :func:`rnnops.core.csv_records.csv_records` delimits it) becomes exactly
one output row, in order: a record that cannot be scored (a malformed line, an unbalanced
quote, the wrong number of fields, no text, text that is not a string, is empty or holds
control characters) is written with ``status = "error"`` and the reason, and is listed in
the result; it never merges into the next record, and rows are never dropped. Every written
row carries the model name, version and URI that scored it.
"""

from __future__ import annotations

import codecs
import functools
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from rnnops.core.csv_records import CSV_RECORD_MODES, clip, control_char, csv_records, unicode_bom
from rnnops.core.io import atomic_path

INPUT_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
SCORED, ERROR = "scored", "error"
PREDICTION_COLUMNS = (
    "topics",
    "scores",
    "top_topic",
    "top_score",
    "known_tokens",
    "oov_rate",
    "note",
)
OUTPUT_COLUMNS = (
    "row",
    "status",
    "error",
    *PREDICTION_COLUMNS,
    "model_name",
    "model_version",
    "model_uri",
    "scored_at",
)

Predict = Callable[[list[str]], pd.DataFrame]
# Lone surrogates: bytes that were not UTF-8 (decoded with surrogateescape), or \\uD800-style
# escapes in JSON; neither can be written as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


class BatchInputError(ValueError):
    """The input as a whole cannot be scored: missing file, unknown format, no text column."""


@dataclass(frozen=True)
class BadRow:
    row: int
    reason: str


@dataclass
class BatchScoreResult:
    input_path: str
    output_path: str
    rows: int
    scored: int
    bad: int
    model_name: str | None
    model_version: str | None
    model_uri: str
    seconds: float
    bad_rows: list[BadRow] = field(default_factory=list)

    def to_dict(self, max_bad_rows: int | None = None) -> dict[str, Any]:
        out = asdict(self)
        out["bad_rows"] = out["bad_rows"][:max_bad_rows]
        return out


def input_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise BatchInputError(
            f"{path}: unknown input format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(INPUT_FORMATS)}"
        )
    return INPUT_FORMATS[suffix]


def check_csv_records(mode: str) -> str:
    if mode not in CSV_RECORD_MODES:
        raise BatchInputError(
            f"csv_records must be one of {', '.join(CSV_RECORD_MODES)}, not {clip(mode)}"
        )
    return mode


def check_paths(input_path: str | Path, output_path: str | Path) -> None:
    """Refuse, before reading or scoring, an output that would destroy the input or a folder."""
    input_format(input_path)
    output_format(output_path)
    src, dest = Path(input_path), Path(output_path)
    if dest.is_dir():
        raise BatchInputError(f"output {dest} is a directory; give a file path (.parquet, .csv)")
    if src.exists() and dest.exists() and src.resolve() == dest.resolve():
        raise BatchInputError(f"output {dest} is the input file; write the scores elsewhere")


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise BatchInputError(
            f"{path}: unknown output format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(OUTPUT_FORMATS)}"
        )
    return OUTPUT_FORMATS[suffix]


# --------------------------------------------------------------------------- reading


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
    if _missing(value):
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


# --------------------------------------------------------------------------- scoring


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _finite_row(scores: Sequence[float], top_score: float) -> bool:
    return all(math.isfinite(float(s)) for s in scores) and math.isfinite(float(top_score))


def score_texts(
    predict: Predict, texts: list[str], chunk_size: int = 1000, progress: bool = True
) -> list[dict[str, Any] | str]:
    """Score ``texts`` in chunks; each item is a prediction dict or the reason it failed.

    A chunk whose scoring raises is retried document by document, so one document
    that breaks the model costs its own row, not its chunk.
    """
    from tqdm.auto import tqdm

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    results: list[dict[str, Any] | str] = []

    def rows_of(frame: pd.DataFrame) -> list[dict[str, Any] | str]:
        out: list[dict[str, Any] | str] = []
        for row in frame.to_dict("records"):
            scores, top_score = row["scores"], row["top_score"]
            if not _finite_row(scores, top_score):
                out.append("the model produced non-finite scores")
                continue
            # How much of the text the model knew; models logged before it was reported
            # leave these empty.
            known = row.get("known_tokens")
            oov = row.get("oov_rate")
            out.append(
                {
                    "topics": [str(t) for t in row["topics"]],
                    "scores": [float(s) for s in scores],
                    "top_topic": str(row["top_topic"]),
                    "top_score": float(top_score),
                    "known_tokens": None if _missing(known) else int(known),
                    "oov_rate": None if _missing(oov) else float(oov),
                    "note": row.get("note") or None,
                }
            )
        return out

    with tqdm(
        total=len(texts), unit="doc", desc="scoring", disable=not progress, mininterval=1.0
    ) as bar:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            try:
                results.extend(rows_of(predict(chunk)))
            except Exception:
                for text in chunk:
                    try:
                        results.extend(rows_of(predict([text])))
                    except Exception as exc:
                        results.append(f"scoring failed: {type(exc).__name__}: {exc}"[:300])
            bar.update(len(chunk))
    return results


def score_documents(
    predict: Predict,
    documents: pd.DataFrame,
    model_name: str | None,
    model_version: str | None,
    model_uri: str,
    chunk_size: int = 1000,
    progress: bool = True,
) -> pd.DataFrame:
    """Every input row with ``status``, ``error``, its topics and scores, and the model."""
    out = documents[["row", "id"]].copy()
    errors = [None if _missing(e) else str(e) for e in documents["error"].tolist()]
    good = [i for i, e in enumerate(errors) if e is None]
    outcomes = score_texts(predict, [documents["text"].iat[i] for i in good], chunk_size, progress)
    predictions: list[dict[str, Any] | None] = [None] * len(documents)
    for i, outcome in zip(good, outcomes, strict=True):
        if isinstance(outcome, str):
            errors[i] = outcome
        else:
            predictions[i] = outcome
    out["status"] = [SCORED if p is not None else ERROR for p in predictions]
    out["error"] = errors
    for key in PREDICTION_COLUMNS:
        out[key] = [p[key] if p is not None else None for p in predictions]
    out["model_name"] = model_name
    out["model_version"] = model_version
    out["model_uri"] = model_uri
    out["scored_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


# --------------------------------------------------------------------------- writing


def write_scores(frame: pd.DataFrame, path: str | Path, id_column: str | None = None) -> None:
    """Write atomically: Parquet keeps topic and score lists; CSV joins them with ';'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fmt = output_format(path)
    frame = frame.rename(columns={"id": id_column}) if id_column else frame.drop(columns="id")
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            arrays, fields = [], []
            types = {
                "row": pa.int64(),
                "topics": pa.list_(pa.string()),
                "scores": pa.list_(pa.float64()),
                "top_score": pa.float64(),
                "known_tokens": pa.int64(),
                "oov_rate": pa.float64(),
            }
            for column in frame.columns:
                values = [None if _missing(v) else v for v in frame[column].tolist()]
                if column == id_column:
                    try:
                        array = pa.array(values)
                    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep as text
                        array = pa.array([None if v is None else str(v) for v in values])
                else:
                    array = pa.array(values, type=types.get(column, pa.string()))
                arrays.append(array)
                fields.append(pa.field(column, array.type))
            pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), tmp)
        else:
            flat = frame.copy()
            flat["topics"] = [";".join(t) if t is not None else None for t in flat["topics"]]
            flat["scores"] = [
                ";".join(f"{s:.6g}" for s in v) if v is not None else None for v in flat["scores"]
            ]
            flat.to_csv(tmp, index=False, float_format="%.6g")


def pyfunc_predict(model: Any) -> Predict:
    """``predict`` for a loaded text model (an MLflow pyfunc that takes a ``text`` column)."""

    def predict(texts: list[str]) -> pd.DataFrame:
        return model.predict(pd.DataFrame({"text": texts}))

    return predict


def run_batch_score(
    predict: Predict,
    input_path: str | Path,
    output_path: str | Path,
    model_name: str | None,
    model_version: str | None,
    model_uri: str,
    text_column: str = "text",
    id_column: str | None = None,
    chunk_size: int = 1000,
    progress: bool = True,
    csv_records: str = "auto",
) -> BatchScoreResult:
    """Read, score in chunks, write every row; return counts and the bad rows."""
    started = time.perf_counter()
    check_paths(input_path, output_path)  # before anything is read or scored
    if id_column in OUTPUT_COLUMNS:
        raise BatchInputError(
            f"id_column {id_column!r} clashes with an output column ({', '.join(OUTPUT_COLUMNS)})"
        )
    if chunk_size < 1:
        raise BatchInputError(f"chunk_size must be at least 1, got {chunk_size}")
    documents = read_documents(input_path, text_column, id_column, csv_records)
    scored = score_documents(
        predict, documents, model_name, model_version, model_uri, chunk_size, progress
    )
    write_scores(scored, output_path, id_column)
    bad = scored[scored["status"] == ERROR]
    return BatchScoreResult(
        input_path=str(input_path),
        output_path=str(output_path),
        rows=len(scored),
        scored=int((scored["status"] == SCORED).sum()),
        bad=len(bad),
        model_name=model_name,
        model_version=model_version,
        model_uri=model_uri,
        seconds=round(time.perf_counter() - started, 3),
        bad_rows=[BadRow(int(r), str(e)) for r, e in zip(bad["row"], bad["error"], strict=True)],
    )
