"""ingest: read a corpus into one validated table.

Output columns: ``doc_id, split, title, text, topics`` (``split`` is ``train`` or
``test``; ``topics`` a list of strings).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from rnnops.core.config import IngestConfig
from rnnops.core.csv_records import (
    QUOTED_CHARS,
    clip,
)
from rnnops.core.io import atomic_path
from rnnops.stages.corpus import COLUMNS, SPLITS, CorpusValidationError, IngestResult
from rnnops.stages.ingest_reuters import load_nltk_reuters, read_nltk_reuters
from rnnops.stages.ingest_table import LOCATION, read_table

log = logging.getLogger(__name__)


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
        where = frame.loc[mask, LOCATION] if LOCATION in frame else None
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
        source = f"the NLTK reuters corpus at {load_nltk_reuters().root}"
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
