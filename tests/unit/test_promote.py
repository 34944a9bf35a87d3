"""Selection never looks at test: the promotion candidate is chosen on validation."""

import dataclasses
import json

import numpy as np
import pytest

from rnnops.core.config import EvaluateConfig, ModelConfig, PromotionConfig
from rnnops.core.io import write_json
from rnnops.stages.evaluate import run_evaluate
from rnnops.stages.preprocess import Dataset, load_dataset, save_dataset
from rnnops.stages.promote import (
    Candidate,
    PromotionError,
    best_candidate,
    gather_candidates,
    record_candidate,
)
from rnnops.stages.train import run_train

LABELS = ["a", "b", "c", "d"]


def split(n, rng, noise):
    """Multi-label documents whose topics are readable from some tokens, with noise."""
    y = (rng.random((n, len(LABELS))) < 0.3).astype(np.int8)
    x = rng.integers(6, 30, size=(n, 12)).astype(np.int32)
    for i in range(n):
        for j in np.flatnonzero(y[i]):
            if rng.random() > noise:
                x[i, rng.integers(0, 12)] = j + 2
    ids = np.array([f"d{i}" for i in range(n)])
    return Dataset(x=x, y=y, doc_ids=ids, lengths=np.full(n, 12))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Three trained models, evaluated; returns the paths and a re-evaluation function."""
    root = tmp_path_factory.mktemp("selection")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(3)
    for name, n in (("train", 240), ("val", 120), ("test", 120)):
        save_dataset(data / f"{name}.npz", split(n, rng, noise=0.3))
    write_json(data / "labels.json", {"task": "multilabel", "labels": LABELS})
    write_json(data / "vocab.json", {"tokens": [f"t{i}" for i in range(30)]})
    configs = {
        "small": ModelConfig(kind="gru", units=2, embedding_dim=2, epochs=1, batch_size=32),
        "medium": ModelConfig(kind="gru", units=6, embedding_dim=6, epochs=3, batch_size=32),
        "wide": ModelConfig(
            kind="lstm", layers=0, embedding_dim=8, embedding_skip=["max"], epochs=4, batch_size=32
        ),
    }
    for name, cfg in configs.items():
        cfg = cfg.model_copy(update={"early_stopping_patience": 0, "learning_rate": 0.02})
        run_train(name, cfg, data, root / "models" / name)

    def evaluate(out: str):
        for name in configs:
            run_evaluate(
                name,
                EvaluateConfig(),
                root / "models" / name,
                data,
                root / out / "metrics" / f"{name}.json",
                root / out / "plots" / name,
                root / out / "eval" / name,
            )
            write_json(
                root / out / "eval" / name / "mlflow.json",
                {"run_id": f"run-{name}", "model_uri": f"runs:/run-{name}/model"},
            )
        return root / out / "metrics", root / out / "eval"

    return root, data, list(configs), evaluate


def candidate(names, metrics, evals, out):
    return record_candidate(names, PromotionConfig(metric="micro_f1"), metrics, evals, out)


def test_permuting_test_labels_cannot_change_the_promoted_model(evaluated):
    root, data, names, evaluate = evaluated
    metrics, evals = evaluate("original")
    chosen = candidate(names, metrics, evals, root / "original" / "promotion.json")
    validation = {n: json.loads((metrics / f"{n}.json").read_text())["validation"] for n in names}
    assert chosen["candidate"] == max(names, key=lambda n: validation[n]["micro_f1"])
    assert chosen["selection_split"] == "validation"

    test = load_dataset(data, "test")
    test_scores_changed = False
    for seed in range(4):
        perm = np.random.default_rng(seed).permutation(len(test.y))
        save_dataset(data / "test.npz", dataclasses.replace(test, y=test.y[perm]))
        metrics_p, evals_p = evaluate(f"permuted{seed}")
        again = candidate(names, metrics_p, evals_p, root / f"permuted{seed}" / "promotion.json")
        assert again["candidate"] == chosen["candidate"]
        assert again["candidate_score"] == chosen["candidate_score"]
        for n in names:
            before = json.loads((metrics / f"{n}.json").read_text())
            after = json.loads((metrics_p / f"{n}.json").read_text())
            assert after["validation"] == before["validation"]
            test_scores_changed |= after["micro_f1"] != before["micro_f1"]
    save_dataset(data / "test.npz", test)
    # The permutations did move the test scores: the choice held because it ignores them.
    assert test_scores_changed


def test_best_candidate_ranks_by_validation_not_test():
    good_on_test = Candidate(
        "a", "r1", "u1", None, {"micro_f1": 0.9, "validation": {"micro_f1": 0.5}}
    )
    good_on_val = Candidate(
        "b", "r2", "u2", None, {"micro_f1": 0.1, "validation": {"micro_f1": 0.6}}
    )
    assert best_candidate([good_on_test, good_on_val], "micro_f1").name == "b"


def test_metrics_without_validation_scores_are_refused(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "eval" / "old").mkdir(parents=True)
    write_json(tmp_path / "metrics" / "old.json", {"micro_f1": 0.8})
    write_json(tmp_path / "eval" / "old" / "mlflow.json", {"run_id": "r", "model_uri": "u"})
    with pytest.raises(PromotionError, match=r"validation micro_f1 .*rerun evaluate@old"):
        gather_candidates(["old"], tmp_path / "metrics", tmp_path / "eval", "micro_f1")
