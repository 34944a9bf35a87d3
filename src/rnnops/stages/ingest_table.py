"""A project's own corpus table (CSV or Parquet) read into the corpus table, every cell checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rnnops.core.config import TableSource
from rnnops.core.csv_records import (
    CONTROL_CHARS,
    clip,
    control_char,
    csv_records,
    line_at,
    unicode_bom,
)
from rnnops.stages.corpus import COLUMNS, MAX_REPORTED, CorpusValidationError, parse_labels

LOCATION = "_location"  # where each document came from, for messages; never written
TABLE_FIX = "Fix the file (or the ingest.table settings) and rerun; nothing was written."


def _malformed(path: Path, problems: list[str], fix: str) -> CorpusValidationError:
    if len(problems) == 1:
        return CorpusValidationError(f"{path}, {problems[0]}. {fix}")
    shown = problems[:MAX_REPORTED]
    if len(problems) > MAX_REPORTED:
        shown.append(f"... and {len(problems) - MAX_REPORTED} more")
    return CorpusValidationError(f"{path} is malformed:\n  - " + "\n  - ".join(shown) + f"\n{fix}")


def decode_table(data: bytes, path: Path) -> str:
    """A CSV file's text: UTF-8 (a UTF-8 byte order mark is dropped), no control characters.

    Raises :class:`CorpusValidationError` naming the file, the line and the fix.
    """
    resave = "Re-save it as UTF-8 CSV (in a spreadsheet: CSV UTF-8) and rerun; nothing was written."
    bom = unicode_bom(data)
    if bom:
        raise CorpusValidationError(
            f"{path}, line 1: the file is {bom} (it starts with a {bom} byte order mark), "
            f"not UTF-8. {resave}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = line_at(data[: exc.start].decode("utf-8"), exc.start)
        raise CorpusValidationError(
            f"{path}, line {line}: byte 0x{data[exc.start]:02X} is not UTF-8; the file is "
            f"binary or in another encoding (Latin-1 or Windows-1252, perhaps). {resave}"
        ) from None
    text = text.removeprefix("\ufeff")
    nuls = text.count("\x00")
    if nuls * 10 >= len(text) > 0:
        raise CorpusValidationError(
            f"{path}, line {line_at(text, text.index(chr(0)))}: {nuls} of its {len(text)} "
            "characters are NUL: the file is UTF-16 (without a byte order mark) or binary, "
            f"not UTF-8 text. {resave}"
        )
    problems: list[str] = []
    last = 0
    for match in CONTROL_CHARS.finditer(text):
        line = line_at(text, match.start())
        if line == last:  # one report a line is enough to find them
            continue
        if len(problems) == MAX_REPORTED:
            problems.append("... and on more lines")
            break
        last = line
        problems.append(f"line {line}: control character {control_char(match.group())[1]}")
    if problems:
        fix = "Remove it (or re-save the file as plain UTF-8 text) and rerun; nothing was written."
        if len(problems) == 1:
            raise CorpusValidationError(f"{path}, {problems[0]} in the text. {fix}")
        raise CorpusValidationError(
            f"{path} holds control characters:\n  - "
            + "\n  - ".join(problems)
            + f"\n{fix.replace('Remove it', 'Remove them')}"
        )
    return text


def _csv_columns(path: Path, data: bytes) -> tuple[dict[str, list], list[str], list[str]]:
    """A CSV table's columns (every value a string), each row's location, the header."""
    header, records = csv_records(decode_table(data, path))
    if header is None:
        raise CorpusValidationError(
            f"{path} is empty: it needs a header row naming its columns and one row per "
            "document. Nothing was written."
        )
    if header.problem:
        raise CorpusValidationError(
            f"{path}, line {header.line}: the header row is malformed ({header.problem}). "
            f"{TABLE_FIX}"
        )
    problems = [f"line {r.line}: {r.problem}" for r in records if r.problem is not None]
    if problems:
        raise _malformed(
            path,
            problems,
            'Quote a field that holds a comma, a quote or a line break ("like, this"), '
            "double the quotes inside it, and rerun; nothing was written.",
        )
    rows = [r for r in records if r.fields]  # a blank line holds no document
    if not rows:
        raise CorpusValidationError(
            f"{path} has a header row (line {header.line}) but no rows below it: add one row "
            "per document. Nothing was written."
        )
    names = list(header.fields)
    # A name that appears twice is refused later if a setting names it.
    columns = {name: [r.fields[names.index(name)] for r in rows] for name in dict.fromkeys(names)}
    return columns, [f"line {r.line}" for r in rows], names


def _type_name(value: object) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, bytes):
        return "bytes"
    return type(value).__name__


def _parquet_columns(path: Path, wanted: list[str]) -> tuple[dict[str, list], list[str], list[str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's errors name no common base
        raise CorpusValidationError(
            f"{path} is not a readable Parquet file ({type(exc).__name__}: "
            f"{clip(str(exc), 120)}). Re-save it as Parquet (or as UTF-8 .csv) and rerun; "
            "nothing was written."
        ) from None
    names = list(table.column_names)
    columns = {
        name: table.column(name).to_pylist() for name in dict.fromkeys(wanted) if name in names
    }
    return columns, [f"row {i + 1}" for i in range(table.num_rows)], names


def _check_values(path: Path, columns: dict[str, list], where: list[str], label: str) -> None:
    """Every value is text (ids may be numbers; labels lists of text), without control chars."""
    problems = []
    for name, values in columns.items():
        for i, value in enumerate(values):
            if len(problems) > MAX_REPORTED:
                break
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            items = value if name == label and isinstance(value, (list, np.ndarray)) else [value]
            for item in items:
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    continue
                if not isinstance(item, str):
                    problems.append(
                        f"{where[i]}: column {clip(name)} holds {_type_name(item)}, not text"
                    )
                    break
                found = control_char(item)
                if found is not None:
                    problems.append(
                        f"{where[i]}: column {clip(name)} holds control character {found[1]}"
                    )
                    break
    if problems:
        raise _malformed(path, problems, TABLE_FIX)


def _check_header(path: Path, wanted: list[str], names: list[str]) -> None:
    """Every column the settings name is in the header row, once."""
    missing = [c for c in dict.fromkeys(wanted) if c not in names]
    if missing:
        shown = ", ".join(clip(c) for c in names[:MAX_REPORTED])
        more = f" and {len(names) - MAX_REPORTED} more" if len(names) > MAX_REPORTED else ""
        raise CorpusValidationError(
            f"{path}, line 1: missing column(s) {', '.join(map(clip, missing))}; the file has "
            f"{shown or 'no named columns'}{more} (set ingest.table.*_column to the right "
            "names, or name the columns in the header row). Nothing was written."
        )
    doubled = [c for c in dict.fromkeys(wanted) if names.count(c) > 1]
    if doubled:
        raise CorpusValidationError(
            f"{path}, line 1: column(s) {', '.join(map(clip, doubled))} appear more than once in "
            f"the header row; rename all but one. Nothing was written."
        )


def read_table(cfg: TableSource, base_dir: Path | None = None) -> pd.DataFrame:
    """The user's own CSV or Parquet table as a corpus frame (and each row's location).

    A malformed file (not UTF-8, control characters, unbalanced quotes, rows of the wrong
    width, no header, no rows, a missing column, not Parquet at all) raises
    :class:`CorpusValidationError` naming the file, the line or row, and the fix.
    """
    path = Path(cfg.path)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise CorpusValidationError(f"ingest.table.path: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise CorpusValidationError(
            f"ingest.table.path: {path} has suffix {clip(suffix)}; use a .csv or .parquet file"
        )
    wanted = [cfg.text_column, cfg.label_column]
    wanted += [c for c in (cfg.id_column, cfg.split_column, cfg.title_column) if c]
    try:
        if suffix == ".csv":
            columns, where, names = _csv_columns(path, path.read_bytes())
        else:
            columns, where, names = _parquet_columns(path, wanted)
    except OSError as exc:
        raise CorpusValidationError(
            f"{path} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    _check_header(path, wanted, names)
    columns = {c: columns[c] for c in dict.fromkeys(wanted)}
    if suffix != ".csv":
        _check_values(path, columns, where, cfg.label_column)
    n = len(where)

    def text(name: str) -> list[str]:
        return [
            "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in columns[name]
        ]

    out = pd.DataFrame(
        {
            "doc_id": text(cfg.id_column) if cfg.id_column else [f"row-{i}" for i in range(n)],
            "title": text(cfg.title_column) if cfg.title_column else [""] * n,
            "text": text(cfg.text_column),
            "topics": [parse_labels(v, cfg.label_delimiter) for v in columns[cfg.label_column]],
            LOCATION: where,
        }
    )
    if cfg.split_column:
        split = pd.Series([v.strip().lower() for v in text(cfg.split_column)], dtype=object)
        out["split"] = split.replace({"training": "train", "testing": "test"})
    else:
        rng = np.random.default_rng(cfg.seed)
        is_test = rng.random(n) < cfg.test_fraction
        out["split"] = np.where(is_test, "test", "train")
    return out[[*COLUMNS, LOCATION]]
