import numpy as np
import pandas as pd
import pytest

from rnnops.core.config import PreprocessConfig
from rnnops.stages.preprocess import (
    LabelSelectionError,
    encode_labels,
    preprocess_frame,
    select_labels,
)


def corpus() -> pd.DataFrame:
    rows = []
    topics = ["grain", "crude", "earn", "acq"]
    for i in range(60):
        split = "train" if i < 44 else "test"
        ts = [topics[i % 4]] + ([topics[(i + 1) % 4]] if i % 5 == 0 else [])
        rows.append(
            {
                "doc_id": f"{split}/{i}",
                "split": split,
                "title": f"T{i}",
                "text": f"{' '.join(ts)} common words here",
                "topics": ts,
            }
        )
    rows.append(
        {
            "doc_id": "test/999",
            "split": "test",
            "title": "",
            "text": "unseenword grain",
            "topics": ["grain"],
        }
    )
    return pd.DataFrame(rows)


def test_multilabel_targets_are_multi_hot():
    y = encode_labels(pd.Series([["a", "c"], ["b"]]), ["a", "b", "c"], "multilabel")
    assert y.tolist() == [[1, 0, 1], [0, 1, 0]]


def test_singlelabel_targets_are_class_indices():
    y = encode_labels(pd.Series([["c"], ["a"]]), ["a", "b", "c"], "singlelabel")
    assert y.tolist() == [2, 0] and y.dtype == np.int32


def test_singlelabel_keeps_only_documents_with_exactly_one_topic():
    cfg = PreprocessConfig(task="singlelabel", label_set="list", topics=("grain", "crude"))
    frame, labels = select_labels(corpus(), cfg)
    assert labels == ["crude", "grain"]
    assert (frame["topics"].map(len) == 1).all()
    assert set(t for ts in frame["topics"] for t in ts) == {"grain", "crude"}


def test_top_k_picks_most_frequent_training_topics():
    cfg = PreprocessConfig(task="multilabel", label_set="top_k", top_k=2)
    _, labels = select_labels(corpus(), cfg)
    assert len(labels) == 2


def test_unknown_topic_in_list_is_named():
    cfg = PreprocessConfig(task="singlelabel", label_set="list", topics=("grain", "cocoa"))
    with pytest.raises(LabelSelectionError, match="cocoa"):
        select_labels(corpus(), cfg)


def test_vocabulary_comes_from_training_split_only():
    cfg = PreprocessConfig(min_freq=1, max_len=10, val_fraction=0.25)
    datasets, vocab, labels, stats = preprocess_frame(corpus(), cfg)
    assert "unseenword" not in vocab
    # Titles T44..T59 exist only in test; validation titles only in validation.
    val_titles = {f"t{d.split('/')[1]}" for d in datasets["val"].doc_ids}
    assert not val_titles & set(vocab)
    assert not {f"t{i}" for i in range(44, 60)} & set(vocab)
    assert stats["splits"]["test"]["oov_rate"] > 0
    assert labels == ["acq", "crude", "earn", "grain"]


def test_splits_shapes_and_stats():
    cfg = PreprocessConfig(min_freq=1, max_len=3, val_fraction=0.25, seed=1)
    datasets, _, _, stats = preprocess_frame(corpus(), cfg)
    n = {k: len(v.doc_ids) for k, v in datasets.items()}
    assert n == {"train": 33, "val": 11, "test": 17}
    assert datasets["train"].x.shape == (33, 3)
    assert datasets["train"].y.shape == (33, 4)
    assert not set(datasets["train"].doc_ids) & set(datasets["val"].doc_ids)
    assert stats["splits"]["train"]["truncation_rate"] == 1.0
    assert set(stats["splits"]["train"]["length_percentiles"]) >= {"p50", "p95", "max"}
    # Stratified: every topic appears in the validation split.
    assert (datasets["val"].y.sum(axis=0) > 0).all()


def test_validation_split_is_seeded():
    cfg = PreprocessConfig(min_freq=1, val_fraction=0.25, seed=3)
    a, *_ = preprocess_frame(corpus(), cfg)
    b, *_ = preprocess_frame(corpus(), cfg)
    c, *_ = preprocess_frame(corpus(), PreprocessConfig(min_freq=1, val_fraction=0.25, seed=4))
    assert a["val"].doc_ids.tolist() == b["val"].doc_ids.tolist()
    assert a["val"].doc_ids.tolist() != c["val"].doc_ids.tolist()


def test_a_training_fraction_shrinks_only_the_fitting_documents():
    whole, *_ = preprocess_frame(corpus(), PreprocessConfig(min_freq=1, val_fraction=0.25, seed=1))
    half_cfg = PreprocessConfig(min_freq=1, val_fraction=0.25, seed=1, train_fraction=0.5)
    half, *_ = preprocess_frame(corpus(), half_cfg)
    again, *_ = preprocess_frame(corpus(), half_cfg)
    assert len(half["train"].doc_ids) in (16, 17)
    assert set(half["train"].doc_ids) < set(whole["train"].doc_ids)
    assert half["train"].doc_ids.tolist() == again["train"].doc_ids.tolist()
    for split in ("val", "test"):
        assert half[split].doc_ids.tolist() == whole[split].doc_ids.tolist()
    # Drawn stratified: every topic keeps training documents.
    assert (half["train"].y.sum(axis=0) > 0).all()


def test_training_fraction_must_be_a_share():
    with pytest.raises(ValueError, match="train_fraction"):
        PreprocessConfig(train_fraction=0.0)
    with pytest.raises(ValueError, match="train_fraction"):
        PreprocessConfig(train_fraction=1.5)
