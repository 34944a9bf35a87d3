"""The corpus table that ingest writes: its columns, and the errors of reading a corpus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


MAX_REPORTED = 10  # problems listed in one message


def parse_labels(value, delimiter: str) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [str(v) for v in value]
    else:
        items = str(value).split(delimiter) if delimiter else [str(value)]
    return [item.strip() for item in items if item.strip()]
