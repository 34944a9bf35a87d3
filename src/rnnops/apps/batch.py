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

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from rnnops.apps.batch_input import (
    BatchInputError,
    file_format,
    input_format,
    is_missing,
    read_documents,
)

# Callers check options before any work, as the reader itself does.
from rnnops.apps.batch_input import check_csv_records as check_csv_records
from rnnops.core.io import atomic_path

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
    return file_format(path, OUTPUT_FORMATS, "output")


# --------------------------------------------------------------------------- scoring


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
                    "known_tokens": None if is_missing(known) else int(known),
                    "oov_rate": None if is_missing(oov) else float(oov),
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
    errors = [None if is_missing(e) else str(e) for e in documents["error"].tolist()]
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
                values = [None if is_missing(v) else v for v in frame[column].tolist()]
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
