"""Tokenization, vocabulary and sequence encoding.

Pure functions, shared by preprocess (batch) and the registered model (serving),
so a document is encoded the same way in both places. NLTK's regex-based
tokenizers need no downloaded model.
"""

from __future__ import annotations

import functools
import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

PAD = "<pad>"
OOV = "<oov>"
PAD_ID = 0
OOV_ID = 1

# NLTK's wordpunct pattern (``WordPunctTokenizer()._pattern``, checked equal in the unit
# tests), compiled with the standard `re` engine: the same tokens as
# nltk.wordpunct_tokenize, several times faster (it dominates serving time). Written out
# rather than read from NLTK because importing nltk loads scipy and scikit-learn, seconds
# at the start of every stage process and of the server.
WORDPUNCT_PATTERN = r"\w+|[^\w\s]+"
_wordpunct = re.compile(WORDPUNCT_PATTERN, re.UNICODE | re.MULTILINE | re.DOTALL)


@functools.cache
def _treebank():
    from nltk.tokenize import TreebankWordTokenizer

    return TreebankWordTokenizer()


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
        return _treebank().tokenize(text)
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


# Words that say nothing about a story's topic: NLTK's English stop-word list (written
# out, so no corpus download is needed) and Reuters' sign-off, which ends most stories
# of every topic. A document made only of these, punctuation, numbers and words outside
# the vocabulary gives the model no evidence for any topic.
_STOP_WORDS = """
    a about above after again against ain all am an and any are aren aren't as at be
    because been before being below between both but by can couldn couldn't d did didn
    didn't do does doesn doesn't doing don don't down during each few for from further
    had hadn hadn't has hasn hasn't have haven haven't having he her here hers herself
    him himself his how i if in into is isn isn't it it's its itself just ll m ma me
    mightn mightn't more most mustn mustn't my myself needn needn't no nor not now o of
    off on once only or other our ours ourselves out over own re s same shan shan't she
    she's should should've shouldn shouldn't so some such t than that that'll the their
    theirs them themselves then there these they this those through to too under until
    up ve very was wasn wasn't we were weren weren't what when where which while who whom
    why will with won won't wouldn wouldn't y you you'd you'll you're you've your yours
    yourself yourselves reuter reuters
    """
STOP_WORDS = frozenset(_STOP_WORDS.split())


def is_evidence(token: str) -> bool:
    """Whether a vocabulary token can carry topic evidence: a word (it has a letter)
    that is not a stop word. Punctuation, bare numbers and the reserved ids cannot."""
    if token in (PAD, OOV):
        return False
    return any(ch.isalpha() for ch in token) and token.lower() not in STOP_WORDS


def evidence_mask(vocab: Sequence[str]) -> np.ndarray:
    """``mask[id]`` is True where vocabulary id ``id`` is an evidence token."""
    return np.fromiter((is_evidence(tok) for tok in vocab), dtype=bool, count=len(vocab))


@dataclass(frozen=True)
class Coverage:
    """How much of each encoded document the model knew, row by row.

    ``tokens``: the tokens the model reads (after truncation to ``max_len``);
    ``known_tokens``: those that are in the vocabulary and carry evidence (stop words,
    punctuation and numbers do not count); ``oov_rate``: the share of the tokens read
    that are outside the vocabulary (1.0 for a document without tokens).
    """

    tokens: np.ndarray
    known_tokens: np.ndarray
    oov_rate: np.ndarray


def coverage(ids: np.ndarray, mask: np.ndarray) -> Coverage:
    """:class:`Coverage` of encoded rows ``ids`` (as :func:`encode` returns them) under the
    vocabulary's :func:`evidence_mask`."""
    ids = np.asarray(ids).reshape(len(ids), -1)
    tokens = (ids != PAD_ID).sum(axis=1)
    oov = (ids == OOV_ID).sum(axis=1)
    # An id outside the vocabulary (never written by encode) counts as no evidence.
    in_vocab = (ids >= 0) & (ids < len(mask))
    known = (mask[np.where(in_vocab, ids, PAD_ID)] & in_vocab).sum(axis=1)
    oov_rate = np.where(tokens > 0, oov / np.maximum(tokens, 1), 1.0)
    return Coverage(tokens.astype(np.int64), known.astype(np.int64), oov_rate.astype(float))
