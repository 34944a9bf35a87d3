"""A tiny Reuters-like corpus in NLTK's on-disk layout, generated for tests."""

from __future__ import annotations

import random
from pathlib import Path

TOPIC_WORDS = {
    "grain": [
        "wheat",
        "corn",
        "grain",
        "harvest",
        "bushels",
        "farmers",
        "crop",
        "soybean",
        "export",
        "tonnes",
        "usda",
        "sorghum",
    ],
    "crude": [
        "oil",
        "crude",
        "barrel",
        "opec",
        "refinery",
        "petroleum",
        "prices",
        "output",
        "brent",
        "pipeline",
        "gasoline",
    ],
    "earn": [
        "profit",
        "earnings",
        "dividend",
        "quarter",
        "share",
        "net",
        "revenue",
        "income",
        "cts",
        "loss",
        "shareholders",
    ],
}
FILLER = [
    "the",
    "said",
    "a",
    "of",
    "in",
    "to",
    "and",
    "for",
    "on",
    "company",
    "year",
    "market",
    "reuter",
    "it",
    "was",
]


def make_document(rng: random.Random, topics: list[str], n_words: int = 40) -> tuple[str, str]:
    pool = [w for t in topics for w in TOPIC_WORDS[t]]
    words = [rng.choice(pool) if rng.random() < 0.5 else rng.choice(FILLER) for _ in range(n_words)]
    title = " ".join(rng.choice(pool) for _ in range(5)).upper()
    return title, " ".join(words) + "."


def write_tiny_reuters(
    nltk_data: Path, n_train: int = 48, n_test: int = 18, seed: int = 0, multi_every: int = 6
) -> Path:
    """Write ``nltk_data/corpora/reuters`` and return ``nltk_data``.

    Three topics; every ``multi_every``-th document carries two topics.
    """
    rng = random.Random(seed)
    root = nltk_data / "corpora" / "reuters"
    (root / "training").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    topics = sorted(TOPIC_WORDS)
    cats, newid = [], 1
    for folder, count in (("training", n_train), ("test", n_test)):
        for i in range(count):
            doc_topics = [topics[i % 3]]
            if multi_every and i % multi_every == multi_every - 1:
                doc_topics.append(topics[(i + 1) % 3])
            title, body = make_document(rng, doc_topics, n_words=rng.randint(20, 60))
            (root / folder / str(newid)).write_text(f"{title}\n  {body}\n", encoding="latin-1")
            cats.append(f"{folder}/{newid} {' '.join(doc_topics)}")
            newid += 1
    (root / "cats.txt").write_text("\n".join(cats) + "\n")
    return nltk_data
