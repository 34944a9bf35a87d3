"""ingest: read a corpus into one validated table.

Output columns: ``doc_id, split, title, text, topics`` (``split`` is ``train`` or
``test``; ``topics`` a list of strings).
"""

from __future__ import annotations

import codecs
import logging
import re
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


def read_table(cfg: TableSource, base_dir: Path | None = None) -> pd.DataFrame:
    path = Path(cfg.path)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise CorpusValidationError(f"ingest.table.path: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    else:
        raise CorpusValidationError(
            f"ingest.table.path: {path} has suffix {suffix!r}; use a .csv or .parquet file"
        )
    wanted = [cfg.text_column, cfg.label_column]
    wanted += [c for c in (cfg.id_column, cfg.split_column, cfg.title_column) if c]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise CorpusValidationError(
            f"{path}: missing column(s) {missing}; the file has {list(frame.columns)} "
            "(set ingest.table.*_column to the right names)"
        )
    n = len(frame)
    out = pd.DataFrame(
        {
            "doc_id": frame[cfg.id_column].astype(str)
            if cfg.id_column
            else [f"row-{i}" for i in range(n)],
            "title": frame[cfg.title_column].fillna("").astype(str) if cfg.title_column else "",
            "text": frame[cfg.text_column].map(lambda v: "" if v is None else str(v)),
            "topics": [_parse_labels(v, cfg.label_delimiter) for v in frame[cfg.label_column]],
        }
    )
    if cfg.split_column:
        split = frame[cfg.split_column].map(lambda v: "" if v is None else str(v).strip().lower())
        split = split.replace({"training": "train", "testing": "test"})
        out["split"] = split
    else:
        rng = np.random.default_rng(cfg.seed)
        is_test = rng.random(n) < cfg.test_fraction
        out["split"] = np.where(is_test, "test", "train")
    return out[COLUMNS]


def _examples(ids: pd.Series, limit: int = 5) -> str:
    shown = ", ".join(map(str, ids.head(limit)))
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return shown + more


def validate_corpus(
    frame: pd.DataFrame, source: str, empty_texts: str = "error"
) -> tuple[pd.DataFrame, list[str]]:
    """Enforce the data contract; raise :class:`CorpusValidationError` naming the rows.

    Returns the frame and the ids of empty documents dropped (``empty_texts: drop``).
    """
    problems = []
    dropped: list[str] = []
    is_empty = (frame["title"].str.strip() + frame["text"].str.strip()) == ""
    if is_empty.any() and empty_texts == "drop":
        dropped = frame.loc[is_empty, "doc_id"].astype(str).tolist()
        log.warning(
            "dropping %d document(s) with empty text: %s",
            len(dropped),
            _examples(pd.Series(dropped)),
        )
        frame = frame[~is_empty]
    elif is_empty.any():
        empty = frame["doc_id"][is_empty]
        problems.append(
            f"{len(empty)} document(s) with empty text: {_examples(empty)} "
            "(remove them, or set empty_texts: drop for this source)"
        )
    if frame.empty:
        problems.append("it holds no documents")
    dup = frame["doc_id"][frame["doc_id"].duplicated()]
    if len(dup):
        problems.append(f"{len(dup)} duplicate doc_id(s): {_examples(dup)}")
    bad_split = frame["doc_id"][~frame["split"].isin(SPLITS)]
    if len(bad_split):
        problems.append(
            f"{len(bad_split)} document(s) with a missing or unknown split "
            f"(allowed: {', '.join(SPLITS)}): {_examples(bad_split)}"
        )
    unlabeled = frame["doc_id"][frame["topics"].map(len) == 0]
    if len(unlabeled):
        problems.append(f"{len(unlabeled)} document(s) without labels: {_examples(unlabeled)}")
    for split in SPLITS:
        if not problems and not (frame["split"] == split).any():
            problems.append(f"no documents in the {split} split")
    if problems:
        raise CorpusValidationError(
            f"corpus from {source} is invalid:\n  - "
            + "\n  - ".join(problems)
            + "\nFix the source data (or the ingest.table column settings) and rerun."
        )
    return frame.reset_index(drop=True), dropped


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
