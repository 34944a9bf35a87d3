import numpy as np
import pandas as pd
import pytest

from rnnops.core.config import EvaluateConfig
from rnnops.core.decision import ABSTAIN, Decision, decide
from rnnops.core.text import (
    OOV,
    PAD,
    coverage,
    encode,
    evidence_mask,
    is_evidence,
    tokenize,
    vocab_index,
)
from rnnops.stages.evaluate import (
    EvaluationError,
    comparison_table,
    compute_metrics,
    evaluate_scores,
    predictions_frame,
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


# --------------------------------------------------------------------------- no evidence, no topic


def test_a_document_without_known_words_gets_no_topic_whatever_at_least_one():
    scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.2, 0.1], [0.1, 0.2, 0.05]])
    known = np.array([0, 3, 1])
    for at_least_one in (True, False):
        pred = decide(scores, "multilabel", 0.5, at_least_one, known)
        assert pred[0].tolist() == [0, 0, 0]
        assert pred[1].tolist() == [1, 0, 0]
    assert decide(scores, "multilabel", 0.5, True, known)[2].tolist() == [0, 1, 0]
    # Without counts (scores alone) the rule is the old one.
    assert decide(scores, "multilabel", 0.5, True)[0].tolist() == [1, 1, 1]


def test_singlelabel_abstains_with_minus_one():
    scores = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    assert decide(scores, "singlelabel", None, True, np.array([0, 2])).tolist() == [ABSTAIN, 0]
    decision = Decision("singlelabel", None, True)
    assert decision.apply(scores, np.array([1, 0])).tolist() == [1, ABSTAIN]
    frame = predictions_frame(
        ["a", "b"], np.array([1, 0]), np.array([1, ABSTAIN]), scores, ["x", "y", "z"], "singlelabel"
    )
    assert frame["predicted"].tolist() == ["y", ""]


def test_min_known_tokens_travels_in_the_decision():
    decision = Decision("multilabel", 0.5, True, min_known_tokens=2)
    assert decision.to_dict()["min_known_tokens"] == 2
    scores = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert decision.apply(scores, np.array([1, 2])).tolist() == [[0, 0], [1, 0]]


def test_evaluation_applies_the_rule_to_validation_and_test():
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    scores = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.3], [0.2, 0.7]])
    known = np.array([5, 5, 5, 5])
    metrics, _, _, _, val = evaluate_scores(
        scores, y, scores, y, ["a", "b"], "multilabel", EvaluateConfig(), known, known
    )
    assert metrics["micro_f1"] == 1.0 and val["micro_f1"] == 1.0
    none_known = np.zeros(4, dtype=int)
    metrics, _, pred, _, val = evaluate_scores(
        scores, y, scores, y, ["a", "b"], "multilabel", EvaluateConfig(), known, none_known
    )
    assert pred.sum() == 0 and metrics["micro_recall"] == 0.0 and val["micro_f1"] == 1.0


def test_coverage_counts_known_words_but_not_stop_words_punctuation_or_numbers():
    vocab = [PAD, OOV, "the", "oil", ",", "5", "reuter", "wheat"]
    index = vocab_index(vocab)
    texts = ["The oil, 5 wheat", "the", "xyzzy qq", "", "Reuter", "oil oil the zzz"]
    ids = encode([tokenize(t) for t in texts], index, max_len=4)
    seen = coverage(ids, evidence_mask(vocab))
    # "The oil, 5 wheat" is cut at max_len=4: the, oil, ",", 5 (wheat is not read).
    assert seen.tokens.tolist() == [4, 1, 2, 0, 1, 4]
    assert seen.known_tokens.tolist() == [1, 0, 0, 0, 0, 2]
    assert seen.oov_rate.tolist() == pytest.approx([0, 0, 1, 1, 0, 0.25])
    assert not is_evidence(PAD) and not is_evidence("The") and is_evidence("Oil")
