"""Tokenization, vocabulary and sequence encoding.

Pure functions, shared by preprocess (batch) and the registered model (serving),
so a document is encoded the same way in both places. NLTK's regex-based
tokenizers need no downloaded model.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from nltk.tokenize import TreebankWordTokenizer, WordPunctTokenizer

PAD = "<pad>"
OOV = "<oov>"
PAD_ID = 0
OOV_ID = 1

_treebank = TreebankWordTokenizer()
# NLTK's wordpunct pattern, compiled with the standard `re` engine: the same tokens
# as nltk.wordpunct_tokenize, several times faster (it dominates serving time).
_wordpunct = re.compile(WordPunctTokenizer()._pattern, re.UNICODE | re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class TextSettings:
    """How raw text becomes token ids; travels with the vocabulary and the model."""

    tokenizer: str = "wordpunct"
    lowercase: bool = True
    include_title: bool = True
    max_len: int = 200
    truncating: str = "post"
    padding: str = "post"

    def to_dict(self) -> dict:
        return asdict(self)


def document_text(title: str, text: str, include_title: bool) -> str:
    if include_title and title:
        return f"{title}\n{text}" if text else title
    return text


def tokenize(text: str, tokenizer: str = "wordpunct", lowercase: bool = True) -> list[str]:
    text = html.unescape(text)
    if lowercase:
        text = text.lower()
    if tokenizer == "treebank":
        return _treebank.tokenize(text)
    if tokenizer == "wordpunct":
        return _wordpunct.findall(text)
    raise ValueError(f"unknown tokenizer {tokenizer!r}; allowed: wordpunct, treebank")


def build_vocab(token_lists: Iterable[Sequence[str]], max_vocab: int, min_freq: int) -> list[str]:
    """Most frequent tokens first (ties alphabetical), after the reserved ids."""
    counts = Counter(tok for tokens in token_lists for tok in tokens)
    ranked = sorted(
        (item for item in counts.items() if item[1] >= min_freq), key=lambda kv: (-kv[1], kv[0])
    )
    keep = max(max_vocab - 2, 0)
    return [PAD, OOV] + [tok for tok, _ in ranked[:keep]]


def encode(
    token_lists: Sequence[Sequence[str]],
    index: dict[str, int],
    max_len: int,
    truncating: str = "post",
    padding: str = "post",
) -> np.ndarray:
    """Map tokens to ids, truncate and pad to ``max_len`` (0 is padding, 1 out-of-vocabulary).

    ``truncating='post'`` keeps the start of a story, where Reuters puts the lead.
    """
    out = np.full((len(token_lists), max_len), PAD_ID, dtype=np.int32)
    for row, tokens in enumerate(token_lists):
        ids = [index.get(tok, OOV_ID) for tok in tokens]
        ids = ids[:max_len] if truncating == "post" else ids[-max_len:]
        if not ids:
            continue
        if padding == "post":
            out[row, : len(ids)] = ids
        else:
            out[row, max_len - len(ids) :] = ids
    return out


def vocab_index(vocab: Sequence[str]) -> dict[str, int]:
    return {tok: i for i, tok in enumerate(vocab)}


def texts_to_ids(texts: Sequence[str], index: dict[str, int], settings: TextSettings) -> np.ndarray:
    tokens = [tokenize(t, settings.tokenizer, settings.lowercase) for t in texts]
    return encode(tokens, index, settings.max_len, settings.truncating, settings.padding)
