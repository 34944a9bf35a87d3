"""NLTK's Reuters corpus (ApteMod) read into the corpus table, every file checked."""

from __future__ import annotations

import codecs
import logging
import re

import pandas as pd

from rnnops.stages.corpus import COLUMNS, MAX_REPORTED, CorpusNotFoundError, CorpusValidationError

log = logging.getLogger(__name__)


def load_nltk_reuters():
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
    reuters = load_nltk_reuters()
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
