"""The pipeline on NLTK's real Reuters corpus (needs NLTK_DATA to hold it)."""

import json
import os
from pathlib import Path

import pytest

from conftest import BIN_DIR, make_project, run, tiny_params

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def nltk_data() -> Path:
    value = os.environ.get("NLTK_DATA", "")
    path = next((Path(p) for p in value.split(os.pathsep) if (Path(p) / "corpora").exists()), None)
    if path is None:
        pytest.fail("set NLTK_DATA to a folder holding corpora/reuters.zip to run the e2e tests")
    return path


def test_lstm_beats_majority_class_on_r8(tmp_path, nltk_data):
    params = tiny_params(
        {
            "preprocess.task": "singlelabel",
            "preprocess.label_set": "r8",
            "preprocess.max_len": 120,
            "preprocess.min_freq": 2,
            "preprocess.val_fraction": 0.1,
            "models.lstm.units": 32,
            "models.lstm.embedding_dim": 32,
            "pretrain.dim": 32,
            # Not the tiny corpus's 50: on R8's 5,000 stories word2vec learns in a few epochs.
            "pretrain.epochs": 5,
            "models.rnn.embedding_dim": 32,
            "models.lstm.epochs": 3,
            "models.lstm.batch_size": 64,
            "models.lstm.pooling": "max",
            "models.lstm.learning_rate": 0.003,
        }
    )
    project, env = make_project(tmp_path / "project", nltk_data, params)
    run([str(BIN_DIR / "dvc"), "repro", "evaluate@lstm"], project, env, timeout=1200)

    stats = json.loads((project / "data/processed/stats.json").read_text())
    test_counts = stats["splits"]["test"]["label_distribution"]
    assert len(test_counts) == 8
    majority = max(test_counts.values()) / sum(test_counts.values())
    metrics = json.loads((project / "metrics/lstm.json").read_text())
    assert metrics["test_documents"] == sum(test_counts.values()) > 2000
    assert metrics["accuracy"] >= majority + 0.3, (metrics["accuracy"], majority)
