"""The behavioural checks themselves: they pass on a well-behaved model and catch a bad one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnops.core import behaviour

LABELS = ["crude", "earn", "grain"]
KEYWORDS = {"crude": ("oil", "crude", "opec"), "earn": ("profit", "net", "dividend")}


class KeywordModel:
    """Scores topics by keyword counts; ``case_sensitive`` makes it fail on casing."""

    labels = LABELS

    def __init__(self, case_sensitive: bool = False, grain_words=("wheat", "corn", "grain")):
        self.case_sensitive = case_sensitive
        self.words = {**KEYWORDS, "grain": tuple(grain_words)}

    def scores(self, texts):
        rows = []
        for text in texts:
            tokens = (text if self.case_sensitive else text.lower()).split()
            counts = [sum(tokens.count(w) for w in self.words[label]) for label in LABELS]
            exp = np.exp(np.asarray(counts, dtype=float))
            rows.append(exp / exp.sum())
        return np.asarray(rows)

    def predict(self, texts):
        scores = self.scores(texts)
        tops = [LABELS[i] for i in scores.argmax(axis=1)]
        # A text without any keyword gets no topic (its scores are uniform).
        chosen = [
            [top] if row.max() > row.min() else [] for top, row in zip(tops, scores, strict=True)
        ]
        return pd.DataFrame({"top_topic": tops, "topics": chosen})


class AlwaysATopic(KeywordModel):
    """Names its top topic whatever the text: what the abstention check must catch."""

    def predict(self, texts):
        frame = super().predict(texts)
        frame["topics"] = [[top] for top in frame["top_topic"]]
        return frame


TEXTS = [
    "OPEC OIL OUTPUT\nopec said crude oil output fell. Reuter",
    "NET PROFIT UP\nnet profit rose and the dividend was raised",
    "WHEAT CROP\nwheat and corn harvest up\n Reuter",
]


def test_checks_pass_on_a_model_that_behaves():
    results = behaviour.run_checks(KeywordModel(), TEXTS)
    assert [r.ok for r in results] == [True] * len(results), [r.summary() for r in results]
    direction = next(r for r in results if r.kind == "directional")
    assert direction.cases == 2  # the grain story is left out


def test_casing_check_catches_a_case_sensitive_model():
    results = {r.name: r for r in behaviour.invariance_checks(KeywordModel(True), TEXTS)}
    assert not results["upper_case"].ok
    assert results["upper_case"].failures
    assert results["extra_whitespace"].ok


def test_directional_check_catches_a_model_blind_to_the_added_words():
    blind = KeywordModel(grain_words=("sorghum",))
    result = behaviour.directional_check(blind, TEXTS[:2], "grain")
    assert result.passed == 0 and not result.ok


def test_minimum_functionality_only_checks_known_topics():
    result = behaviour.minimum_functionality_check(KeywordModel())
    assert result.cases == sum(1 for topic, _ in behaviour.HEADLINES if topic in LABELS)
    assert result.ok, result.failures


def test_sign_off_is_removed_or_added():
    assert behaviour.strip_sign_off("text.\n Reuter\n") == "text."
    assert behaviour.add_after_headline("HEAD\nbody", ["New."]) == "HEAD\nNew. body"


class MultiLabelModel(KeywordModel):
    """Multi-label: every topic with a keyword is chosen; ``grain`` never scores highest."""

    class decision:  # mimics TopicPredictor.decision
        task = "multilabel"

    def predict(self, texts):
        frame = super().predict(texts)
        frame["topics"] = [
            [label for label in LABELS if any(w in t.lower().split() for w in self.words[label])]
            or [top]
            for t, top in zip(texts, frame["top_topic"], strict=True)
        ]
        return frame


def test_minimum_functionality_accepts_the_topic_among_the_chosen_ones_for_multilabel():
    grain_headlines = [("grain", "wheat oil opec crude")]
    multi = MultiLabelModel()
    assert multi.predict([grain_headlines[0][1]])["top_topic"][0] == "crude"
    assert behaviour.minimum_functionality_check(multi, grain_headlines).ok
    # Single-label models are held to the top topic.
    assert not behaviour.minimum_functionality_check(KeywordModel(), grain_headlines).ok


def test_no_evidence_check_passes_when_text_without_evidence_gets_no_topic():
    texts = behaviour.no_evidence_texts(n=10, seed=1)
    assert len(texts) == len(behaviour.NO_EVIDENCE_TEXTS) + 10
    assert texts == behaviour.no_evidence_texts(n=10, seed=1)  # reproducible
    result = behaviour.no_evidence_check(KeywordModel(), texts)
    assert result.kind == "abstention" and result.ok and result.cases == len(texts)
    assert behaviour.no_evidence_topic_share(KeywordModel()) == 0.0


def test_no_evidence_check_catches_a_model_that_always_names_a_topic():
    result = behaviour.no_evidence_check(AlwaysATopic())
    assert not result.ok and result.passed == 0 and result.failures
    assert behaviour.no_evidence_topic_share(AlwaysATopic()) == 1.0
    assert "no_evidence_no_topics" in {r.name for r in behaviour.run_checks(KeywordModel(), TEXTS)}
