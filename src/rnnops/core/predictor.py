"""Raw text in, topics out: the trained network plus its vocabulary and decision rule.

This is what the registered model wraps, so serving encodes and decides exactly
as evaluate did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnops.core.decision import MIN_KNOWN_TOKENS, Decision
from rnnops.core.io import read_json
from rnnops.core.text import (
    TextSettings,
    coverage,
    evidence_mask,
    tokenize,
    vocab_index,
)
from rnnops.core.text import (
    encode as encode_tokens,
)

OUTPUT_COLUMNS = (
    "topics",
    "scores",
    "top_topic",
    "top_score",
    "tokens",
    "known_tokens",
    "oov_rate",
    "note",
)
NO_EVIDENCE_NOTE = (
    "no topic: the model knows none of this document's words (stop words, punctuation "
    "and numbers do not count), so its scores say nothing about the text"
)


def bounded_tokens(text: str, settings: TextSettings) -> list[str]:
    """The tokens of ``text`` that encoding keeps (``max_len`` of them), and a few more.

    A document far longer than ``max_len`` is not tokenized whole: memory and time stay
    bounded by ``max_len``, not by the document. Only a part at the kept end is read; it
    grows until it holds at least two tokens more than are kept, so the tokens a cut can
    damage (a word or an HTML entity split at its edge) are never among those kept.
    """
    keep = max(settings.max_len, 1)
    span = keep * 8  # Reuters averages 5 characters a token: most parts need one pass
    while span < len(text):
        part = text[:span] if settings.truncating == "post" else text[-span:]
        tokens = tokenize(part, settings.tokenizer, settings.lowercase)
        if len(tokens) > keep + 2:
            return tokens
        span *= 2
    return tokenize(text, settings.tokenizer, settings.lowercase)


@dataclass
class TopicPredictor:
    model: object
    vocab: list[str]
    labels: list[str]
    settings: TextSettings
    decision: Decision

    def __post_init__(self) -> None:
        self._index = vocab_index(self.vocab)
        self._evidence = evidence_mask(self.vocab)

    @classmethod
    def from_files(cls, model_path: Path, vocab_path: Path, decision_path: Path) -> TopicPredictor:
        from rnnops.core.models import load_model

        vocab = read_json(vocab_path)
        decision = read_json(decision_path)
        return cls(
            model=load_model(model_path),
            vocab=vocab["tokens"],
            labels=decision["labels"],
            settings=TextSettings(**vocab["text_settings"]),
            decision=Decision(
                task=decision["task"],
                threshold=decision["threshold"],
                at_least_one=decision["at_least_one"],
                # Decision files written before the rule existed get it too.
                min_known_tokens=decision.get("min_known_tokens", MIN_KNOWN_TOKENS),
            ),
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids of ``texts``, the same as preprocess writes for the same documents."""
        s = self.settings
        tokens = [bounded_tokens(t, s) for t in texts]
        return encode_tokens(tokens, self._index, s.max_len, s.truncating, s.padding)

    def scores(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self._scores(self.encode(texts), batch_size)

    def _scores(self, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return np.asarray(self.model.predict(ids, batch_size=batch_size, verbose=0))

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        """One row per text: the chosen topics with their scores, the best-scoring topic,
        and how much of the text the model knew (``tokens`` read, ``known_tokens`` that
        carry evidence, ``oov_rate``). A text without evidence gets no topic and a ``note``
        that says why; ``top_topic`` is then only the network's highest score."""
        return pd.DataFrame(self.predict_rows(texts), columns=list(OUTPUT_COLUMNS))

    def predict_rows(self, texts: Sequence[str]) -> list[dict]:
        """:meth:`predict`'s rows as plain dicts (what serving sends, without a frame)."""
        if len(texts) == 0:
            return []
        ids = self.encode(texts)
        scores = self._scores(ids)
        seen = coverage(ids, self._evidence)
        chosen = self.decision.apply(scores, seen.known_tokens)
        names = self.labels
        rows = []
        for n, row, pick in zip(range(len(scores)), scores, chosen, strict=True):
            if self.decision.task == "singlelabel":
                idx = [int(pick)] if pick >= 0 else []
            else:
                idx = list(np.flatnonzero(pick))
            idx.sort(key=lambda i: -row[i])
            best = int(row.argmax())
            known = int(seen.known_tokens[n])
            rows.append(
                {
                    "topics": [str(names[i]) for i in idx],
                    "scores": [round(float(row[i]), 6) for i in idx],
                    "top_topic": str(names[best]),
                    "top_score": round(float(row[best]), 6),
                    "tokens": int(seen.tokens[n]),
                    "known_tokens": known,
                    "oov_rate": round(float(seen.oov_rate[n]), 6),
                    "note": NO_EVIDENCE_NOTE if known < self.decision.min_known_tokens else "",
                }
            )
        return rows
