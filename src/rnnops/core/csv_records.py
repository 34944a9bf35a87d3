"""CSV records: one careful reader for every CSV the project takes in.

Own tables (``rnnops.stages.ingest``) and batch files (``rnnops.apps.batch``) both read
through it. A record is one physical line, unless a quoted field carries it over line
breaks (RFC 4180). An unbalanced quote makes a field swallow the lines after it, so a
record that spans lines is kept only if it parses cleanly (every quote closed, a closing
quote followed by a comma or the end of the line) and has the header's width; in ``auto``
mode, also only if the lines strictly inside it do not each read as a record of the
header's width on their own (the trace of a stray quote that opens a field and another
that closes it records later; a story's lines rarely all hold exactly as many commas).
Otherwise its first line is reported as malformed and reading resumes on the next line,
so one broken record costs one line and never shifts the records after it. Two stray
quotes on neighbouring lines cannot be told from a two-line text: ``lines`` mode (one
record a line) settles that where records never hold line breaks.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass

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
CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
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
    match = CONTROL_CHARS.search(text)
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
            if not fields:
                records.append(CsvRecord(start + 1, cursor, ()))
            elif span == 1:
                problem = None if len(fields) == width else _width_problem(len(fields), width)
                records.append(CsvRecord(start + 1, cursor, tuple(fields), problem))
            else:
                kind, why = _judge_span(
                    lines, start, cursor, len(fields), width, mode, split_doubtful
                )
                doubtful |= kind == "doubtful"
                multiline |= kind == "multiline"
                if why is not None:
                    records.append(CsvRecord(start + 1, start + 1, None, _RUNS_TO + why))
                    cursor = start + 1
                    break  # a fresh reader, from the line after the opening quote
                records.append(CsvRecord(start + 1, cursor, tuple(fields)))
    return header, records, doubtful, multiline


_RUNS_TO = "unbalanced quote: the quoted field that opens on this line runs to "


def _judge_span(
    lines: list[str], start: int, cursor: int, n_fields: int, width: int, mode: str, split: bool
) -> tuple[str | None, str | None]:
    """A record read over lines ``start``..``cursor - 1``: whether it is ``"multiline"`` or
    ``"doubtful"``, and why its opening quote is unbalanced when it is judged so (else None)."""
    guess = mode == "auto" and width > 1  # judge a multi-line record by its lines
    if n_fields != width:
        return None, f"line {cursor}, and the record it makes has {_width_problem(n_fields, width)}"
    inner = lines[start + 1 : cursor - 1]
    if guess and cursor - start > 2 and all(_reads_as_record(line, width) for line in inner):
        return None, (
            f"line {cursor}, but the lines between ({start + 2}-{cursor - 1}) each "
            "read as a record of their own"
        )
    if guess and _doubtful(lines[start + 1 : cursor], width):
        why = (
            f"line {cursor}, but a line in it reads as a record of its own (and no "
            "record of the file spans lines beyond doubt)"
        )
        return "doubtful", why if split else None
    return "multiline", None


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
