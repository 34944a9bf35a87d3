import numpy as np
import pandas as pd
import pytest

from rnnops.config import EvaluateConfig
from rnnops.evaluate import (
    EvaluationError,
    comparison_table,
    compute_metrics,
    decide,
    evaluate_scores,
    tune_threshold,
)


def test_at_least_one_topic_per_document():
    scores = np.array([[0.1, 0.2, 0.05], [0.9, 0.8, 0.1]])
    assert decide(scores, "multilabel", 0.5, at_least_one=True).tolist() == [[0, 1, 0], [1, 1, 0]]
    assert decide(scores, "multilabel", 0.5, at_least_one=False).tolist() == [[0, 0, 0], [1, 1, 0]]


def test_singlelabel_decision_is_argmax():
    assert decide(np.array([[0.2, 0.7, 0.1]]), "singlelabel", None, True).tolist() == [1]


def test_metrics_by_hand_multilabel():
    y = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    p = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    metrics, per_class = compute_metrics(y, p, ["a", "b", "c"], "multilabel")
    # tp=4, fp=1, fn=1 -> micro P=R=F1=0.8; subset accuracy 2/4.
    assert metrics["micro_f1"] == pytest.approx(0.8)
    assert metrics["accuracy"] == pytest.approx(0.5)
    # per class F1: a=1, b=2/3, c=2/3
    assert per_class["f1"].tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert metrics["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert per_class["support"].tolist() == [2, 1, 2]


def test_metrics_by_hand_singlelabel():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 2, 0])
    metrics, per_class = compute_metrics(y, p, ["a", "b", "c"], "singlelabel")
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["micro_f1"] == pytest.approx(4 / 6)
    # a: P=1/2 R=1/2; b: P=1/2 R=1; c: P=1 R=2/3
    assert per_class["f1"].tolist() == pytest.approx([0.5, 2 / 3, 0.8])


def test_threshold_is_chosen_on_validation_not_test():
    rng = np.random.default_rng(0)
    val_y = rng.integers(0, 2, size=(200, 4))
    val_scores = np.clip(val_y * 0.3 + rng.random((200, 4)) * 0.35, 0, 1)  # separable near 0.3
    test_y = rng.integers(0, 2, size=(200, 4))
    test_scores = np.clip(
        test_y * 0.3 + 0.5 + rng.random((200, 4)) * 0.2, 0, 1
    )  # separable near 0.8
    tuned = tune_threshold(val_scores, val_y, at_least_one=True)
    assert 0.25 <= tuned <= 0.4
    _, _, _, decision, _ = evaluate_scores(
        val_scores, val_y, test_scores, test_y, list("abcd"), "multilabel", EvaluateConfig()
    )
    assert decision.threshold == tuned


def test_fixed_threshold_is_used_as_is():
    y = np.eye(3)
    _, _, _, decision, _ = evaluate_scores(
        y, y, y, y, list("abc"), "multilabel", EvaluateConfig(threshold=0.7)
    )
    assert decision.threshold == 0.7


def test_non_finite_scores_fail():
    scores = np.array([[np.nan, 0.2]])
    with pytest.raises(EvaluationError, match="non-finite"):
        evaluate_scores(
            scores,
            np.array([[1, 0]]),
            scores,
            np.array([[1, 0]]),
            ["a", "b"],
            "multilabel",
            EvaluateConfig(),
        )


def test_comparison_table_sorts_by_macro_f1(tmp_path):
    pd.Series({"model": "rnn", "macro_f1": 0.3, "accuracy": 0.5}).to_json(tmp_path / "rnn.json")
    pd.Series({"model": "lstm", "macro_f1": 0.6, "accuracy": 0.7}).to_json(tmp_path / "lstm.json")
    lines = comparison_table(tmp_path).splitlines()
    assert lines[0].split()[:3] == ["model", "accuracy", "micro_f1"]
    assert lines[2].startswith("lstm") and lines[3].startswith("rnn")
