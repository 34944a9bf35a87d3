"""ingest: read a corpus into one validated table.

Output columns: ``doc_id, split, title, text, topics`` (``split`` is ``train`` or
``test``; ``topics`` a list of strings).
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnops.config import IngestConfig, TableSource
from rnnops.io import atomic_path

log = logging.getLogger(__name__)

COLUMNS = ["doc_id", "split", "title", "text", "topics"]
SPLITS = ("train", "test")


class CorpusNotFoundError(RuntimeError):
    """The NLTK corpus is not installed and could not be downloaded."""


class CorpusValidationError(ValueError):
    """The corpus violates the data contract (empty texts, duplicate ids, ...)."""


@dataclass(frozen=True)
class IngestResult:
    documents: int
    train: int
    test: int
    topics: int
    dropped_empty: int


def _load_nltk_reuters():
    import nltk
    from nltk.corpus import reuters

    try:
        reuters.ensure_loaded()
        return reuters
    except LookupError:
        log.warning("NLTK 'reuters' corpus not found; trying nltk.download('reuters')")
    try:
        ok = nltk.download("reuters", quiet=True, raise_on_error=False)
    except Exception:
        ok = False
    if ok:
        from nltk.corpus import reuters as fresh

        try:
            fresh.ensure_loaded()
            return fresh
        except LookupError:
            pass
    raise CorpusNotFoundError(
        "the NLTK 'reuters' corpus is not installed and nltk.download('reuters') failed.\n"
        "Provide it in one of these ways:\n"
        "  - point NLTK_DATA at a folder holding corpora/reuters.zip "
        "(export NLTK_DATA=/path/to/nltk_data), or\n"
        "  - download it where there is internet: python -m nltk.downloader -d /path/to/nltk_data "
        "reuters\n"
        f"NLTK searched: {', '.join(nltk.data.path)}"
    )


def split_title(raw: str) -> tuple[str, str]:
    """Reuters stories carry their headline on the first line."""
    raw = raw.strip()
    head, _, body = raw.partition("\n")
    return head.strip(), " ".join(body.split())


# Bytes that are never text in the corpus' 8-bit encoding: C0 controls other than tab,
# newline, vertical tab, form feed and carriage return, DEL, and the C1 range 0x80-0x9F
# (where UTF-8 continuation bytes and Windows-1252 punctuation land). NLTK's copy of
# Reuters holds none; a file with them is binary or saved in another encoding.
_NOT_TEXT = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
MAX_REPORTED = 10


def _line_of(text: str | bytes, offset: int) -> int:
    newline = b"\n" if isinstance(text, bytes) else "\n"
    return text.count(newline, 0, offset) + 1


def decode_document(data: bytes, name: str, encoding: str) -> str:
    """A corpus file's text; raise naming the file and line if it is not text in ``encoding``."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad, line = data[exc.start], _line_of(data, exc.start)
    else:
        match = _NOT_TEXT.search(text)
        if match is None:
            return text
        bad, line = ord(match.group()), _line_of(text, match.start())
    other = "" if codecs.lookup(encoding).name == "utf-8" else " (such as UTF-8)"
    raise CorpusValidationError(
        f"{name}, line {line}: byte 0x{bad:02X} is not text in the corpus encoding "
        f"({encoding}); the file is binary or saved in another encoding{other}. "
        f"Re-save it as {encoding} text, or remove it and its line in cats.txt."
    )


def parse_cats(data: bytes, name: str, fileids: set[str]) -> dict[str, list[str]]:
    """Parse NLTK's ``cats.txt`` (``<fileid> <topic> [<topic> ...]`` a line).

    Returns sorted topics by file id; raises :class:`CorpusValidationError` listing
    every malformed line (file name and line number). Blank lines are skipped.
    """
    topics: dict[str, set[str]] = {}
    problems: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        bad = next((b for b in raw if b > 0x7E or (b < 0x20 and b not in (9, 13))), None)
        if bad is not None:
            problems.append(
                f"{name}, line {number}: byte 0x{bad:02X} is not ASCII "
                "(the label file holds ASCII file ids and topic names)"
            )
            continue
        fields = raw.decode("ascii").split()
        if not fields:
            continue
        fileid, labels = fields[0], fields[1:]
        if not labels:
            problems.append(
                f"{name}, line {number}: {fileid!r} has no topics "
                "(each line is '<fileid> <topic> [<topic> ...]')"
            )
        elif fileid not in fileids:
            problems.append(f"{name}, line {number}: {fileid!r} is not a file of the corpus")
        else:
            topics.setdefault(fileid, set()).update(labels)
    if problems:
        shown = problems[:MAX_REPORTED]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more")
        raise CorpusValidationError(
            "the corpus' label file is malformed:\n  - "
            + "\n  - ".join(shown)
            + "\nFix those lines and rerun; nothing was written."
        )
    return {fileid: sorted(labels) for fileid, labels in topics.items()}


def read_nltk_reuters() -> pd.DataFrame:
    reuters = _load_nltk_reuters()
    fileids = reuters.fileids()
    cats = reuters.abspath("cats.txt")
    with cats.open() as handle:
        topics = parse_cats(handle.read(), str(cats), set(fileids))
    rows = []
    for fileid in fileids:
        path = reuters.abspath(fileid)
        try:
            with path.open() as handle:
                data = handle.read()
        except OSError as exc:
            raise CorpusValidationError(f"{path}: cannot be read ({exc})") from None
        title, text = split_title(decode_document(data, str(path), reuters.encoding(fileid)))
        rows.append(
            {
                "doc_id": fileid,
                "split": "train" if fileid.partition("/")[0] == "training" else "test",
                "title": title,
                "text": text,
                "topics": topics.get(fileid, []),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _parse_labels(value, delimiter: str) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [str(v) for v in value]
    else:
        items = str(value).split(delimiter) if delimiter else [str(value)]
    return [item.strip() for item in items if item.strip()]


# --------------------------------------------------------------------------- CSV records
#
# One careful reader for every CSV the project takes in (own tables here, batch files in
# rnnops.batch). A record is one physical line, unless a quoted field carries it over line
# breaks (RFC 4180). An unbalanced quote makes a field swallow the lines after it, so a
# record that spans lines is kept only if it parses cleanly (every quote closed, a closing
# quote followed by a comma or the end of the line) and has the header's width; in ``auto``
# mode, also only if the lines strictly inside it do not each read as a record of the
# header's width on their own (the trace of a stray quote that opens a field and another
# that closes it records later; a story's lines rarely all hold exactly as many commas).
# Otherwise its first line is reported as malformed and reading resumes on the next line,
# so one broken record costs one line and never shifts the records after it. Two stray
# quotes on neighbouring lines cannot be told from a two-line text: ``lines`` mode (one
# record a line) settles that where records never hold line breaks.

CSV_RECORD_MODES = ("auto", "lines", "quoted")
# A quoted field still open this many lines after it started is an unbalanced quote: the
# bound also keeps re-reading after one (each costs at most this many lines) linear.
MAX_RECORD_LINES = 1000
# Fields as long as a story can be; Python's default (128 KiB) is a guard for other uses.
_FIELD_LIMIT = 2**31 - 1
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_BREAK = re.compile(r"\r\n|\r|\n")
# Characters that are never text in a table: C0 controls other than tab, newline and
# carriage return, DEL, and the C1 range (Windows-1252 or UTF-8 bytes decoded twice).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL", 0x0B: "vertical tab", 0x0C: "form feed"}
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "UTF-32", "utf-32-be"),
    (codecs.BOM_UTF16_LE, "UTF-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "UTF-16", "utf-16-be"),
)
QUOTED_CHARS = 40


def clip(value: object, limit: int = QUOTED_CHARS) -> str:
    """``repr`` of ``value`` cut to about ``limit`` characters: messages never echo input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_lines(text: str) -> list[str]:
    """Physical lines with their line breaks (``\\r\\n``, ``\\r`` or ``\\n``), as csv reads them."""
    return _LINE.findall(text)


def line_at(text: str, offset: int) -> int:
    """The 1-based physical line that holds ``text[offset]``."""
    return len(_BREAK.findall(text, 0, offset)) + 1


def control_char(text: str) -> tuple[int, str] | None:
    """The offset and name of the first control character in ``text``, or None."""
    match = _CONTROL.search(text)
    if match is None:
        return None
    code = ord(match.group())
    name = _CONTROL_NAMES.get(code)
    return match.start(), f"U+{code:04X}" + (f" ({name})" if name else "")


def unicode_bom(data: bytes) -> str | None:
    """UTF-16 or UTF-32, where ``data`` starts with its byte order mark and reads as text in it.

    Tables and batch files hold mostly ASCII (column names, ids, punctuation), so bytes
    that decode to mostly non-ASCII are not taken for UTF-16: they are a UTF-8 file whose
    first bytes are broken, and the line-by-line checks name them.
    """
    for bom, name, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(codec)
            except UnicodeDecodeError:
                return None
            return name if sum(ch.isascii() for ch in text) * 2 >= len(text) else None
    return None


@dataclass(frozen=True)
class CsvRecord:
    """One CSV record: its physical lines, its fields, and what is wrong with it (or None).

    ``fields`` is ``()`` for a blank line and None where the quotes make the fields
    unknowable; a record of the wrong width keeps its fields.
    """

    line: int
    end_line: int
    fields: tuple[str, ...] | None
    problem: str | None = None


def _width_problem(got: int, width: int) -> str:
    return f"{got} field{'s' * (got != 1)}; the header has {width}"


def _reads_as_record(line: str, width: int) -> bool:
    try:
        return len(next(csv.reader([line], strict=True), [])) == width
    except csv.Error:
        return False


def _quote_problem(exc: csv.Error, start: int, stopped: int, hit_bound: bool, mode: str) -> str:
    """Words for a record that the csv module refused (``stopped``: the line it was on)."""
    message = str(exc)
    if "expected after" in message:
        if stopped == start:
            return (
                "text follows a closing quote (a field with a quote in it must be quoted, "
                'its quotes doubled: "say ""hi""")'
            )
        return (
            f"unbalanced quote: the quoted field that opens on this line runs into line "
            f"{stopped}, where text follows what would close it"
        )
    if "end of data" in message:
        if mode == "lines":
            return "unbalanced quote: a quoted field opens on this line and does not close on it"
        if hit_bound:
            return (
                "unbalanced quote: the quoted field that opens on this line is still open "
                f"{stopped - start + 1} lines later"
            )
        return "unbalanced quote: the quoted field that opens on this line never closes"
    if "field limit" in message:
        return f"a field longer than {_FIELD_LIMIT} characters"
    return f"malformed CSV ({clip(message, 80)})"


def _doubtful(later: list[str], width: int) -> bool:
    """Whether a multi-line record's later lines look like records (or broken ones) themselves.

    A story's lines rarely do; records that a stray quote swallowed do: one reads as a
    record of the header's width, or opens a quote it does not close (the quote that
    closes the stray one).
    """
    for line in later:
        try:
            if len(next(csv.reader([line], strict=True), [])) == width:
                return True
        except csv.Error:
            return True
    return False


def _parse_records(
    lines: list[str], mode: str, limit: int, split_doubtful: bool
) -> tuple[CsvRecord | None, list[CsvRecord], bool, bool]:
    """``csv_records`` in one pass; also whether doubtful and other multi-line records occur."""
    header: CsvRecord | None = None
    records: list[CsvRecord] = []
    doubtful = multiline = False
    cursor = 0  # the next line the reader is handed
    bound = 0  # the reader is handed no line at or past this one

    def feed() -> Iterator[str]:
        nonlocal cursor
        while cursor < min(len(lines), bound):
            cursor += 1
            yield lines[cursor - 1]

    def swallowed(start: int, why: str) -> None:
        nonlocal cursor
        problem = f"unbalanced quote: the quoted field that opens on this line runs to {why}"
        records.append(CsvRecord(start + 1, start + 1, None, problem))
        cursor = start + 1

    while cursor < len(lines):
        reader = csv.reader(feed(), strict=True)
        while cursor < len(lines):
            start = cursor
            bound = start + limit
            try:
                fields = next(reader)
            except csv.Error as exc:
                stopped = max(cursor, start + 1)
                hit_bound = cursor >= bound and cursor < len(lines)
                problem = _quote_problem(exc, start + 1, stopped, hit_bound, mode)
                record = CsvRecord(start + 1, start + 1, None, problem)
                cursor = start + 1
                if header is None:
                    return record, [], False, False
                records.append(record)
                break  # a fresh reader, from the line after the broken one
            except StopIteration:
                break
            span = cursor - start
            if header is None:
                if fields:
                    header = CsvRecord(start + 1, cursor, tuple(fields))
                continue
            width = len(header.fields)
            guess = mode == "auto" and width > 1  # judge a multi-line record by its lines
            if not fields:
                records.append(CsvRecord(start + 1, cursor, ()))
            elif span == 1:
                problem = None if len(fields) == width else _width_problem(len(fields), width)
                records.append(CsvRecord(start + 1, cursor, tuple(fields), problem))
            elif len(fields) != width:
                swallowed(
                    start,
                    f"line {cursor}, and the record it makes has "
                    f"{_width_problem(len(fields), width)}",
                )
                break
            elif (
                guess
                and span > 2
                and all(_reads_as_record(line, width) for line in lines[start + 1 : cursor - 1])
            ):
                swallowed(
                    start,
                    f"line {cursor}, but the lines between ({start + 2}-{cursor - 1}) each "
                    "read as a record of their own",
                )
                break
            elif guess and _doubtful(lines[start + 1 : cursor], width):
                doubtful = True
                if split_doubtful:
                    swallowed(
                        start,
                        f"line {cursor}, but a line in it reads as a record of its own (and no "
                        "record of the file spans lines beyond doubt)",
                    )
                    break
                records.append(CsvRecord(start + 1, cursor, tuple(fields)))
            else:
                multiline = True
                records.append(CsvRecord(start + 1, cursor, tuple(fields)))
    return header, records, doubtful, multiline


def csv_records(
    text: str, mode: str = "auto", max_record_lines: int = MAX_RECORD_LINES
) -> tuple[CsvRecord | None, list[CsvRecord]]:
    """The header record (None for a file without one) and every record after it.

    ``mode``: ``auto`` and ``quoted`` let quoted fields span lines; ``lines`` makes every
    physical line one record. ``auto`` also refuses a record whose lines strictly inside it
    each read as a record of their own and, in a file where no record spans lines beyond
    doubt, one with any later line that reads as a record (or a broken one) itself. Blank
    lines before the header are skipped.
    """
    if mode not in CSV_RECORD_MODES:
        raise ValueError(f"mode must be one of {', '.join(CSV_RECORD_MODES)}, got {clip(mode)}")
    lines = split_lines(text)
    limit = 1 if mode == "lines" else max(1, max_record_lines)
    previous = csv.field_size_limit(_FIELD_LIMIT)
    try:
        header, records, doubtful, multiline = _parse_records(lines, mode, limit, False)
        if mode == "auto" and doubtful and not multiline:
            # No record of the file spans lines beyond doubt: the doubtful ones are stray quotes.
            header, records, _, _ = _parse_records(lines, mode, limit, True)
    finally:
        csv.field_size_limit(previous)
    return header, records


# --------------------------------------------------------------------------- own tables

_LOCATION = "_location"  # where each document came from, for messages; never written
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
    for match in _CONTROL.finditer(text):
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
            "topics": [_parse_labels(v, cfg.label_delimiter) for v in columns[cfg.label_column]],
            _LOCATION: where,
        }
    )
    if cfg.split_column:
        split = pd.Series([v.strip().lower() for v in text(cfg.split_column)], dtype=object)
        out["split"] = split.replace({"training": "train", "testing": "test"})
    else:
        rng = np.random.default_rng(cfg.seed)
        is_test = rng.random(n) < cfg.test_fraction
        out["split"] = np.where(is_test, "test", "train")
    return out[[*COLUMNS, _LOCATION]]


def _examples(ids: pd.Series, limit: int = 5, where: pd.Series | None = None) -> str:
    names = [clip(i) if len(str(i)) > QUOTED_CHARS else str(i) for i in ids.head(limit)]
    if where is not None:
        names = [f"{n} ({w})" for n, w in zip(names, where.head(limit), strict=True)]
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(names) + more


def validate_corpus(
    frame: pd.DataFrame, source: str, empty_texts: str = "error"
) -> tuple[pd.DataFrame, list[str]]:
    """Enforce the data contract; raise :class:`CorpusValidationError` naming the rows.

    Returns the frame (``COLUMNS``) and the ids of empty documents dropped
    (``empty_texts: drop``). A frame from :func:`read_table` also names each row's line.
    """
    problems = []
    dropped: list[str] = []

    def named(mask: pd.Series) -> str:
        where = frame.loc[mask, _LOCATION] if _LOCATION in frame else None
        return _examples(frame.loc[mask, "doc_id"], where=where)

    is_empty = (frame["title"].str.strip() + frame["text"].str.strip()) == ""
    if is_empty.any() and empty_texts == "drop":
        dropped = frame.loc[is_empty, "doc_id"].astype(str).tolist()
        log.warning("dropping %d document(s) with empty text: %s", len(dropped), named(is_empty))
        frame = frame[~is_empty]
    elif is_empty.any():
        problems.append(
            f"{int(is_empty.sum())} document(s) with empty text: {named(is_empty)} "
            "(remove them, or set empty_texts: drop for this source)"
        )
    if frame.empty:
        problems.append("it holds no documents")
    dup = frame["doc_id"].duplicated()
    if dup.any():
        problems.append(f"{int(dup.sum())} duplicate doc_id(s): {named(dup)}")
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        problems.append(
            f"{int(bad_split.sum())} document(s) with a missing or unknown split "
            f"(allowed: {', '.join(SPLITS)}): {named(bad_split)}"
        )
    unlabeled = frame["topics"].map(len) == 0
    if unlabeled.any():
        problems.append(f"{int(unlabeled.sum())} document(s) without labels: {named(unlabeled)}")
    for split in SPLITS:
        if not problems and not (frame["split"] == split).any():
            problems.append(f"no documents in the {split} split")
    if problems:
        raise CorpusValidationError(
            f"corpus from {source} is invalid:\n  - "
            + "\n  - ".join(problems)
            + "\nFix the source data (or the ingest.table column settings) and rerun; "
            "nothing was written."
        )
    return frame[COLUMNS].reset_index(drop=True), dropped


def load_corpus(cfg: IngestConfig, base_dir: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    if cfg.source == "nltk_reuters":
        frame = read_nltk_reuters()
        source = f"the NLTK reuters corpus at {_load_nltk_reuters().root}"
        return validate_corpus(frame, source, cfg.nltk_reuters.empty_texts)
    frame = read_table(cfg.table, base_dir)
    return validate_corpus(frame, str(cfg.table.path), cfg.table.empty_texts)


def run_ingest(cfg: IngestConfig, output: str | Path, base_dir: Path | None = None) -> IngestResult:
    frame, dropped = load_corpus(cfg, base_dir)
    with atomic_path(output) as tmp:
        frame.to_parquet(tmp, index=False)
    topics = {t for ts in frame["topics"] for t in ts}
    return IngestResult(
        documents=len(frame),
        train=int((frame["split"] == "train").sum()),
        test=int((frame["split"] == "test").sum()),
        topics=len(topics),
        dropped_empty=len(dropped),
    )
