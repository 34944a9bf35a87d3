"""Behavioural checks of a trained topic model (invariance, direction, minimum functionality,
abstention on text without evidence).

Pure core: every check takes a predictor with ``labels``, ``scores(texts)`` and
``predict(texts)`` (a :class:`rnnops.core.predictor.TopicPredictor`, as the registered
model wraps it) and returns :class:`CheckResult` values. The tests run them on the
tiny-corpus champion and ``bench/quality.py`` on the real corpus.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

# Sentences about the grain trade, written in Reuters' style from words that the
# real corpus and the generated test corpus share.
GRAIN_SENTENCES = (
    "Farmers expect a larger wheat and corn harvest this year.",
    "Grain exports rose to 1.5 mln tonnes of wheat, corn and soybean, the USDA said.",
)

# Short headlines whose topic a reader gets at once. Only the ones whose topic the
# model knows are checked.
HEADLINES: tuple[tuple[str, str], ...] = (
    ("grain", "Wheat and corn exports rise as farmers harvest record grain crop"),
    ("grain", "USDA says wheat harvest of 50 mln bushels, grain exports up"),
    ("crude", "OPEC agrees to cut crude oil output, barrel prices rise"),
    ("crude", "Refinery raises crude oil and gasoline prices by one dlr a barrel"),
    ("earn", "Company reports higher quarter net profit and raises dividend"),
    ("earn", "Net income rose to 5.2 mln dlrs or 40 cts a share in the quarter"),
    ("acq", "Company agrees to acquire rival in 300 mln dlr takeover"),
    ("money-fx", "Dollar falls against yen as central bank intervenes in currency markets"),
    ("interest", "Central bank cuts discount rate by half a point to lower interest rates"),
    ("ship", "Port strike leaves cargo ships and tankers waiting to unload"),
    ("coffee", "Coffee prices fall as ICO talks on export quotas break down"),
    ("gold", "Gold mine output rises to 200,000 ounces"),
)

# Documents that give a topic model no evidence: words of no language, other scripts,
# stop words, punctuation and numbers. None of them may get a topic.
NO_EVIDENCE_TEXTS: tuple[str, ...] = (
    "qwzxv blorftangle snurpwizzle",
    "Zyxqwv trombulating flinderpox gwarbles",
    "the",
    "and",
    "of the",
    "Reuter",
    "...",
    "!!! ??? ---",
    "12 345 6.789",
    "Нефть подорожала после решения ОПЕК",
    "石油价格上涨",
    "ارتفعت أسعار النفط",
    "Τιμές πετρελαίου",
    "🙂🙂🙂",
)


def no_evidence_texts(n: int = 20, seed: int = 0) -> list[str]:
    """:data:`NO_EVIDENCE_TEXTS` and ``n`` made-up words (9 to 14 letters, beyond any
    vocabulary), one to six per document."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("bcdfghjklmnpqrstvwxzaeiouy"))
    made_up = [
        " ".join(
            "".join(rng.choice(letters, size=int(rng.integers(9, 15))))
            for _ in range(int(rng.integers(1, 7)))
        )
        for _ in range(n)
    ]
    return [*NO_EVIDENCE_TEXTS, *made_up]


SIGN_OFF = "\n Reuter\n"
_SIGN_OFF = re.compile(r"\s*reuter\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CheckResult:
    """One behavioural check: how many cases held, and which ones did not."""

    name: str
    kind: str  # invariance | directional | minimum_functionality | abstention
    cases: int
    passed: int
    min_pass_rate: float
    failures: list[str] = field(default_factory=list)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.cases if self.cases else 1.0

    @property
    def ok(self) -> bool:
        return self.cases > 0 and self.pass_rate >= self.min_pass_rate

    def to_dict(self) -> dict:
        return {**asdict(self), "pass_rate": round(self.pass_rate, 4), "ok": self.ok}

    def summary(self) -> str:
        status = "ok" if self.ok else "FAILED"
        return (
            f"{self.kind:<22} {self.name:<28} {self.passed}/{self.cases} "
            f"({self.pass_rate:.1%}, needs {self.min_pass_rate:.0%}) {status}"
        )


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def strip_sign_off(text: str) -> str:
    return _SIGN_OFF.sub("", text)


def _invariance(
    predictor, texts: Sequence[str], name: str, change: Callable[[str], str], min_pass_rate: float
) -> CheckResult:
    before = predictor.predict(list(texts))["top_topic"].tolist()
    after = predictor.predict([change(t) for t in texts])["top_topic"].tolist()
    failures = [
        f"{_short(t)!r}: {a} -> {b}" for t, a, b in zip(texts, before, after, strict=True) if a != b
    ]
    return CheckResult(
        name, "invariance", len(texts), len(texts) - len(failures), min_pass_rate, failures[:10]
    )


def invariance_checks(
    predictor, texts: Sequence[str], sign_off_min_pass_rate: float = 0.98
) -> list[CheckResult]:
    """Casing and extra whitespace never change the top topic; a trailing "Reuter"
    sign-off (added to stories without one, removed from stories with one) almost never.
    """
    texts = list(texts)
    spaced = re.compile(r"\s+")
    return [
        _invariance(predictor, texts, "upper_case", str.upper, 1.0),
        _invariance(predictor, texts, "lower_case", str.lower, 1.0),
        _invariance(
            predictor, texts, "extra_whitespace", lambda t: spaced.sub("  \n\t ", t) + "  ", 1.0
        ),
        _invariance(
            predictor,
            texts,
            "reuter_sign_off",
            lambda t: strip_sign_off(t) if _SIGN_OFF.search(t) else t + SIGN_OFF,
            sign_off_min_pass_rate,
        ),
    ]


def add_after_headline(text: str, sentences: Sequence[str]) -> str:
    """Insert sentences after the first line (the headline): the lead survives truncation."""
    head, sep, body = text.partition("\n")
    added = " ".join(sentences)
    return f"{head}\n{added} {body}" if sep else f"{added} {text}"


def directional_check(
    predictor,
    texts: Sequence[str],
    topic: str = "grain",
    sentences: Sequence[str] = GRAIN_SENTENCES,
    min_pass_rate: float = 0.95,
) -> CheckResult:
    """Adding sentences about ``topic`` raises its score (documents not about it)."""
    name = f"adding_{topic}_raises_{topic}"
    if topic not in predictor.labels:
        return CheckResult(name, "directional", 0, 0, min_pass_rate, [f"{topic!r} is no label"])
    col = predictor.labels.index(topic)
    texts = list(texts)
    before = predictor.scores(texts)[:, col]
    after = predictor.scores([add_after_headline(t, sentences) for t in texts])[:, col]
    failures = [
        f"{_short(t)!r}: {b:.4f} -> {a:.4f}"
        for t, b, a in zip(texts, before, after, strict=True)
        if not a > b
    ]
    return CheckResult(
        name,
        "directional",
        len(texts),
        len(texts) - len(failures),
        min_pass_rate,
        failures[:10],
    )


def minimum_functionality_check(
    predictor,
    headlines: Sequence[tuple[str, str]] = HEADLINES,
    min_pass_rate: float = 1.0,
) -> CheckResult:
    """Short unambiguous headlines get their obvious topic.

    Single-label: as the top topic. Multi-label: among the topics the decision rule
    assigns (a wheat headline is ``grain`` and ``wheat`` in Reuters, and either may
    score highest).
    """
    cases = [(topic, text) for topic, text in headlines if topic in predictor.labels]
    if not cases:
        return CheckResult("obvious_headlines", "minimum_functionality", 0, 0, min_pass_rate)
    frame = predictor.predict([text for _, text in cases])
    chosen = (
        frame["topics"].tolist()
        if "topics" in frame
        and getattr(predictor, "decision", None) is not None
        and predictor.decision.task == "multilabel"
        else [[top] for top in frame["top_topic"]]
    )
    failures = [
        f"{text!r}: expected {topic}, got {', '.join(got)}"
        for (topic, text), got in zip(cases, chosen, strict=True)
        if topic not in got
    ]
    return CheckResult(
        "obvious_headlines",
        "minimum_functionality",
        len(cases),
        len(cases) - len(failures),
        min_pass_rate,
        failures,
    )


def _assigned(frame) -> list[list[str]]:
    """The topics a prediction frame assigns (a frame without ``topics`` names its top one)."""
    if "topics" in frame:
        return [list(t) for t in frame["topics"]]
    return [[top] for top in frame["top_topic"]]


def no_evidence_check(
    predictor, texts: Sequence[str] | None = None, min_pass_rate: float = 1.0
) -> CheckResult:
    """Documents without evidence (:func:`no_evidence_texts`) get no topic at all."""
    texts = list(no_evidence_texts() if texts is None else texts)
    frame = predictor.predict(texts)
    failures = [
        f"{_short(t)!r}: got {', '.join(got)}"
        for t, got in zip(texts, _assigned(frame), strict=True)
        if got
    ]
    return CheckResult(
        "no_evidence_no_topics",
        "abstention",
        len(texts),
        len(texts) - len(failures),
        min_pass_rate,
        failures[:10],
    )


def no_evidence_topic_share(predictor, texts: Sequence[str] | None = None) -> float:
    """The share of documents without evidence that got any topic (0 is right)."""
    result = no_evidence_check(predictor, texts)
    return round(1 - result.pass_rate, 4)


def run_checks(
    predictor,
    texts: Sequence[str],
    topic: str = "grain",
    sample: int | None = 300,
    seed: int = 0,
) -> list[CheckResult]:
    """All behavioural checks; ``texts`` are held-out stories ("headline\\nbody").

    The directional check uses the stories whose top topic is not ``topic``.
    """
    texts = list(texts)
    if sample is not None and len(texts) > sample:
        idx = np.random.default_rng(seed).choice(len(texts), size=sample, replace=False)
        texts = [texts[i] for i in sorted(idx)]
    results = invariance_checks(predictor, texts)
    tops = predictor.predict(texts)["top_topic"].tolist()
    others = [t for t, top in zip(texts, tops, strict=True) if top != topic]
    results.append(directional_check(predictor, others, topic))
    results.append(minimum_functionality_check(predictor))
    results.append(no_evidence_check(predictor))
    return results
