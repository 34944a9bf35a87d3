"""preprocess: tokens, a train-only vocabulary, padded id arrays and label targets.

Writes into one output directory: ``{train,val,test}.npz`` (``x`` token ids,
``y`` targets, ``doc_ids``, ``lengths``), ``vocab.json``, ``labels.json`` and
``stats.json``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnops.core.config import PreprocessConfig
from rnnops.core.io import atomic_path, write_json
from rnnops.core.text import (
    OOV_ID,
    PAD_ID,
    TextSettings,
    build_vocab,
    document_text,
    encode,
    tokenize,
    vocab_index,
)

log = logging.getLogger(__name__)

# The eight most frequent single-topic categories of ModApte (the "R8" benchmark).
R8_TOPICS = ("acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade")
SPLITS = ("train", "val", "test")


class LabelSelectionError(ValueError):
    """The requested label set leaves no usable data."""


@dataclass(frozen=True)
class Dataset:
    """One split, in memory."""

    x: np.ndarray
    y: np.ndarray
    doc_ids: np.ndarray
    lengths: np.ndarray


@dataclass(frozen=True)
class PreprocessResult:
    splits: dict[str, int]
    labels: int
    vocab_size: int


def _single_topic(frame: pd.DataFrame) -> pd.Series:
    return frame["topics"].map(len) == 1


def select_labels(frame: pd.DataFrame, cfg: PreprocessConfig) -> tuple[pd.DataFrame, list[str]]:
    """Choose the label set and keep the documents that belong to the task.

    multilabel: every document keeps the chosen topics it has (documents left with
    none are dropped). singlelabel: documents with exactly one topic, which is one
    of the chosen (the R8/R52 convention).
    """
    train = frame[frame["split"] == "train"]
    if cfg.task == "singlelabel":
        pool = frame[_single_topic(frame)]
        pool_train = pool[pool["split"] == "train"]
        counts = Counter(t for ts in pool_train["topics"] for t in ts)
    else:
        pool = frame
        counts = Counter(t for ts in train["topics"] for t in ts)

    if cfg.label_set == "all":
        labels = sorted(counts)
    elif cfg.label_set == "r8":
        labels = sorted(R8_TOPICS)
    elif cfg.label_set == "r52":
        test_counts = Counter(t for ts in pool[pool["split"] == "test"]["topics"] for t in ts)
        labels = sorted(t for t in counts if test_counts[t] > 0)
    elif cfg.label_set == "top_k":
        labels = sorted(
            t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: cfg.top_k]
        )
    else:
        labels = sorted(set(cfg.topics))
        unknown = [t for t in labels if counts[t] == 0]
        if unknown:
            raise LabelSelectionError(
                f"preprocess.topics: {unknown} have no training documents"
                + (" with a single topic" if cfg.task == "singlelabel" else "")
                + f"; known topics include {sorted(counts)[:20]}"
            )
    chosen = set(labels)
    if cfg.task == "singlelabel":
        keep = pool["topics"].map(lambda ts: ts[0] in chosen)
        out = pool[keep].copy()
    else:
        out = pool.copy()
        out["topics"] = out["topics"].map(lambda ts: [t for t in ts if t in chosen])
        out = out[out["topics"].map(len) > 0]
    missing = [s for s in ("train", "test") if not (out["split"] == s).any()]
    if missing or len(labels) < 2:
        raise LabelSelectionError(
            f"label set {cfg.label_set!r} for task {cfg.task!r} leaves {len(labels)} label(s) "
            f"and no documents in {missing or 'no split'}; choose another preprocess.label_set"
        )
    return out.reset_index(drop=True), labels


def encode_labels(topics: pd.Series, labels: list[str], task: str) -> np.ndarray:
    index = {t: i for i, t in enumerate(labels)}
    if task == "singlelabel":
        return np.array([index[ts[0]] for ts in topics], dtype=np.int32)
    y = np.zeros((len(topics), len(labels)), dtype=np.float32)
    for row, ts in enumerate(topics):
        for t in ts:
            y[row, index[t]] = 1.0
    return y


def stratify_key(topics: pd.Series, counts: Counter) -> np.ndarray | None:
    """Each document's most frequent topic; rare keys pooled so every stratum has 2+."""
    key = topics.map(lambda ts: max(ts, key=lambda t: (counts[t], t)))
    sizes = key.value_counts()
    key = key.where(key.map(sizes) >= 2, "__rare__")
    if (key == "__rare__").sum() == 1:
        return None
    return key.to_numpy()


def split_validation(
    train: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Imported here: every stage that only loads a dataset imports this module, and
    # scikit-learn adds seconds to each such process's start.
    from sklearn.model_selection import train_test_split

    counts = Counter(t for ts in train["topics"] for t in ts)
    key = stratify_key(train["topics"], counts)
    try:
        fit, val = train_test_split(train, test_size=fraction, random_state=seed, stratify=key)
    except ValueError:
        log.warning("validation split cannot be stratified; using a seeded random split")
        fit, val = train_test_split(train, test_size=fraction, random_state=seed)
    return fit.sort_values("doc_id"), val.sort_values("doc_id")


def _percentiles(lengths: np.ndarray) -> dict[str, float]:
    if len(lengths) == 0:
        return {}
    qs = np.percentile(lengths, [50, 90, 95, 99])
    return {
        "p50": float(qs[0]),
        "p90": float(qs[1]),
        "p95": float(qs[2]),
        "p99": float(qs[3]),
        "max": int(lengths.max()),
        "mean": float(lengths.mean()),
    }


def preprocess_frame(
    frame: pd.DataFrame, cfg: PreprocessConfig
) -> tuple[dict[str, Dataset], list[str], list[str], dict]:
    """Pure core: corpus table in, encoded splits, vocabulary, labels and stats out."""
    data, labels = select_labels(frame, cfg)
    fit, val = split_validation(data[data["split"] == "train"], cfg.val_fraction, cfg.seed)
    if cfg.train_fraction < 1.0:
        # The kept share is drawn like a validation split of the fitting documents.
        fit, _ = split_validation(fit, 1.0 - cfg.train_fraction, cfg.seed)
    parts = {"train": fit, "val": val, "test": data[data["split"] == "test"].sort_values("doc_id")}
    tokens = {
        name: [
            tokenize(document_text(t, x, cfg.include_title), cfg.tokenizer, cfg.lowercase)
            for t, x in zip(part["title"], part["text"], strict=True)
        ]
        for name, part in parts.items()
    }
    # Vocabulary from the fitting part of the training split only: no leakage
    # from validation or test.
    vocab = build_vocab(tokens["train"], cfg.max_vocab, cfg.min_freq)
    index = vocab_index(vocab)
    datasets, stats_splits = {}, {}
    for name, part in parts.items():
        x = encode(tokens[name], index, cfg.max_len, cfg.truncating, cfg.padding)
        lengths = np.array([len(t) for t in tokens[name]], dtype=np.int32)
        y = encode_labels(part["topics"], labels, cfg.task)
        datasets[name] = Dataset(
            x=x, y=y, doc_ids=part["doc_id"].to_numpy(dtype=str), lengths=lengths
        )
        n_tokens = int(lengths.sum())
        n_oov = sum(1 for ts in tokens[name] for tok in ts if tok not in index)
        label_counts = Counter(t for ts in part["topics"] for t in ts)
        stats_splits[name] = {
            "documents": len(part),
            "tokens": n_tokens,
            "length_percentiles": _percentiles(lengths),
            "truncation_rate": float((lengths > cfg.max_len).mean()) if len(lengths) else 0.0,
            "oov_rate": n_oov / n_tokens if n_tokens else 0.0,
            "empty_after_encoding": int(((x != PAD_ID).sum(axis=1) == 0).sum()),
            "label_distribution": {t: label_counts.get(t, 0) for t in labels},
        }
    stats = {
        "task": cfg.task,
        "label_set": cfg.label_set,
        "labels": len(labels),
        "vocab_size": len(vocab),
        "max_len": cfg.max_len,
        "splits": stats_splits,
    }
    return datasets, vocab, labels, stats


def save_dataset(path: Path, ds: Dataset) -> None:
    np.savez(path, x=ds.x, y=ds.y, doc_ids=ds.doc_ids, lengths=ds.lengths)


def load_dataset(data_dir: str | Path, split: str) -> Dataset:
    path = Path(data_dir) / f"{split}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: run the preprocess stage first (dvc repro preprocess)"
        )
    with np.load(path, allow_pickle=False) as z:
        return Dataset(x=z["x"], y=z["y"], doc_ids=z["doc_ids"], lengths=z["lengths"])


def text_settings(cfg: PreprocessConfig) -> TextSettings:
    return TextSettings(
        tokenizer=cfg.tokenizer,
        lowercase=cfg.lowercase,
        include_title=cfg.include_title,
        max_len=cfg.max_len,
        truncating=cfg.truncating,
        padding=cfg.padding,
    )


def run_preprocess(
    cfg: PreprocessConfig, input_path: str | Path, output_dir: str | Path
) -> PreprocessResult:
    frame = pd.read_parquet(input_path)
    frame["topics"] = frame["topics"].map(list)
    datasets, vocab, labels, stats = preprocess_frame(frame, cfg)
    with atomic_path(output_dir) as tmp:
        tmp.mkdir()
        for name, ds in datasets.items():
            save_dataset(tmp / f"{name}.npz", ds)
        write_json(
            tmp / "vocab.json",
            {
                "tokens": vocab,
                "pad_id": PAD_ID,
                "oov_id": OOV_ID,
                "text_settings": text_settings(cfg).to_dict(),
            },
        )
        write_json(
            tmp / "labels.json", {"task": cfg.task, "label_set": cfg.label_set, "labels": labels}
        )
        write_json(tmp / "stats.json", stats)
        write_json(tmp / "params.json", cfg.model_dump(mode="json"))
    return PreprocessResult(
        splits={k: len(v.doc_ids) for k, v in datasets.items()},
        labels=len(labels),
        vocab_size=len(vocab),
    )
