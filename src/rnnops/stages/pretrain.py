"""pretrain: word embeddings learned from the training split's own text (word2vec).

Self-supervised: skip-gram with negative sampling over the token ids of the training
documents only (never validation or test, and nothing from outside the corpus).
Models with ``embedding_init: word2vec`` start their embedding layer from these
vectors and fine-tune them. Writes ``embeddings.npy`` (one row per vocabulary id;
ids word2vec never saw, padding and ``<oov>`` included, are zeros) and
``pretrain.json`` into the output directory.

Deterministic: one worker thread, a fixed seed and a hash of the token that does not
depend on ``PYTHONHASHSEED`` (gensim's default seeds each vector with ``hash``).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rnnops.core.config import PretrainConfig
from rnnops.core.io import atomic_path, read_json, write_json
from rnnops.stages.preprocess import load_dataset

log = logging.getLogger(__name__)

EMBEDDINGS = "embeddings.npy"


class PretrainedEmbeddingsError(ValueError):
    """The pretrained vectors do not fit the model that is to start from them."""


@dataclass(frozen=True)
class PretrainSummary:
    dim: int
    vocab_size: int
    covered_tokens: int
    training_documents: int
    seconds: float


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


def train_word2vec(token_ids: np.ndarray, vocab_size: int, cfg: PretrainConfig) -> np.ndarray:
    """Pure core: a (vocab_size, dim) matrix of word2vec vectors for the ids in ``token_ids``.

    ``token_ids`` is the padded training matrix; 0 (padding) and 1 (``<oov>``) are left out
    of the sentences, and their rows, like those of ids never seen, stay zero.
    """
    from gensim.models import Word2Vec

    sentences = [[str(t) for t in row if t > 1] for row in token_ids]
    model = Word2Vec(
        sentences,
        vector_size=cfg.dim,
        window=cfg.window,
        min_count=1,
        sg=1 if cfg.skipgram else 0,
        negative=cfg.negative,
        epochs=cfg.epochs,
        seed=cfg.seed,
        workers=1,
        hashfxn=_stable_hash,
    )
    vectors = np.zeros((vocab_size, cfg.dim), dtype=np.float32)
    for token, index in model.wv.key_to_index.items():
        vectors[int(token)] = model.wv.vectors[index]
    return vectors


def run_pretrain(cfg: PretrainConfig, data_dir: str | Path, output_dir: str | Path):
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    vocab_size = len(read_json(data_dir / "vocab.json")["tokens"])
    train = load_dataset(data_dir, "train")
    start = time.perf_counter()
    vectors = train_word2vec(train.x, vocab_size, cfg)
    summary = PretrainSummary(
        dim=cfg.dim,
        vocab_size=vocab_size,
        covered_tokens=int(np.abs(vectors).sum(axis=1).astype(bool).sum()),
        training_documents=len(train.x),
        seconds=round(time.perf_counter() - start, 3),
    )
    with atomic_path(output_dir) as tmp:
        tmp.mkdir()
        np.save(tmp / EMBEDDINGS, vectors)
        write_json(tmp / "pretrain.json", asdict(summary))
    return summary


def load_embeddings(pretrained_dir: str | Path, vocab_size: int, dim: int) -> np.ndarray:
    """The pretrained matrix, checked against the model that is to start from it."""
    path = Path(pretrained_dir) / EMBEDDINGS
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: run the pretrain stage first (dvc repro pretrain)"
        )
    vectors = np.load(path, allow_pickle=False)
    if vectors.shape != (vocab_size, dim):
        raise PretrainedEmbeddingsError(
            f"{path} holds {vectors.shape[0]} x {vectors.shape[1]} vectors; the model needs "
            f"{vocab_size} x {dim} (vocabulary x embedding_dim): set embedding_dim to "
            "pretrain.dim, or rerun pretrain on this data (dvc repro pretrain)"
        )
    return vectors
