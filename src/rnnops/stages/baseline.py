"""Reference baselines on the same processed splits: TF-IDF + linear SVM, majority class."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from rnnops.core.decision import decide
from rnnops.core.io import read_json
from rnnops.core.text import document_text
from rnnops.stages.evaluate import compute_metrics
from rnnops.stages.preprocess import load_dataset


def _texts(raw: pd.DataFrame, doc_ids: np.ndarray, include_title: bool) -> list[str]:
    rows = raw.set_index("doc_id").loc[list(doc_ids)]
    return [
        document_text(t, x, include_title) for t, x in zip(rows["title"], rows["text"], strict=True)
    ]


def tfidf_svm(raw_path: str | Path, data_dir: str | Path) -> dict:
    """Fit TF-IDF + LinearSVC on train+val, score test with the project's metrics.

    Multi-label: one-vs-rest, positive margin or, failing that, the best-scoring topic.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    data_dir = Path(data_dir)
    info = read_json(data_dir / "labels.json")
    settings = read_json(data_dir / "vocab.json")["text_settings"]
    raw = pd.read_parquet(raw_path)
    train, val, test = (load_dataset(data_dir, s) for s in ("train", "val", "test"))
    fit_ids = np.concatenate([train.doc_ids, val.doc_ids])
    fit_y = np.concatenate([train.y, val.y])
    start = time.perf_counter()
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, lowercase=True)
    x_fit = vec.fit_transform(_texts(raw, fit_ids, settings["include_title"]))
    x_test = vec.transform(_texts(raw, test.doc_ids, settings["include_title"]))
    if info["task"] == "singlelabel":
        clf = LinearSVC(C=1.0).fit(x_fit, fit_y)
        pred = clf.predict(x_test)
    else:
        clf = OneVsRestClassifier(LinearSVC(C=1.0)).fit(x_fit, fit_y)
        margins = clf.decision_function(x_test)
        pred = decide(margins, "multilabel", 0.0, at_least_one=True)
    seconds = time.perf_counter() - start
    metrics, _ = compute_metrics(test.y, pred, info["labels"], info["task"])
    return {"model": "tfidf_linear_svm", **metrics, "train_seconds": round(seconds, 2)}


def majority_class(data_dir: str | Path) -> dict:
    data_dir = Path(data_dir)
    info = read_json(data_dir / "labels.json")
    train, test = load_dataset(data_dir, "train"), load_dataset(data_dir, "test")
    if info["task"] == "singlelabel":
        pred = np.full(len(test.y), np.bincount(train.y).argmax())
    else:
        pred = np.zeros_like(test.y, dtype=np.int8)
        pred[:, train.y.sum(axis=0).argmax()] = 1
    metrics, _ = compute_metrics(test.y, pred, info["labels"], info["task"])
    return {"model": "majority_class", **metrics, "train_seconds": 0.0}
