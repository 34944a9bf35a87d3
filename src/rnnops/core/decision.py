"""How scores become topics: the decision rule that travels with a registered model.

Pure numpy: the serving path imports it without evaluation's scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A document with fewer evidence tokens than this (words in the vocabulary that are not
# stop words, see rnnops.core.text.coverage) gets no topic: its scores are the network's
# prior, not a reading of the text. One is the smallest evidence there is; no story of
# NLTK's Reuters falls below it (the fewest have 4), so the metrics do not move.
MIN_KNOWN_TOKENS = 1
# Single-label "no topic" (class indices are 0..n-1).
ABSTAIN = -1


@dataclass(frozen=True)
class Decision:
    """How scores become topics; travels with the registered model."""

    task: str
    threshold: float | None
    at_least_one: bool
    min_known_tokens: int = MIN_KNOWN_TOKENS

    def apply(self, scores: np.ndarray, known_tokens: np.ndarray | None = None) -> np.ndarray:
        return decide(
            scores,
            self.task,
            self.threshold,
            self.at_least_one,
            known_tokens,
            self.min_known_tokens,
        )

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "threshold": self.threshold,
            "at_least_one": self.at_least_one,
            "min_known_tokens": self.min_known_tokens,
        }


def decide(
    scores: np.ndarray,
    task: str,
    threshold: float | None,
    at_least_one: bool,
    known_tokens: np.ndarray | None = None,
    min_known_tokens: int = MIN_KNOWN_TOKENS,
) -> np.ndarray:
    """Class indices (single-label) or a 0/1 matrix (multi-label).

    With ``known_tokens`` (evidence tokens per document), a document with fewer than
    ``min_known_tokens`` abstains: no topic in multi-label (whatever ``at_least_one``
    says), :data:`ABSTAIN` in single-label.
    """
    abstain = (
        None
        if known_tokens is None
        else np.asarray(known_tokens).reshape(len(scores)) < min_known_tokens
    )
    if task == "singlelabel":
        pred = scores.argmax(axis=1)
        if abstain is not None:
            pred = np.where(abstain, ABSTAIN, pred)
        return pred
    pred = (scores >= threshold).astype(np.int8)
    if at_least_one and len(scores):
        pred[np.arange(len(scores)), scores.argmax(axis=1)] = 1
    if abstain is not None:
        pred[abstain] = 0
    return pred
