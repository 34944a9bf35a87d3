"""Behavioural tests on the registered champion, trained on a generated corpus.

Opt-in (marker ``behavioural``): ``make test`` and ``make test-behavioural`` run
them; ``bench/quality.py`` runs the same checks on the real-corpus model.
"""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import BIN_DIR, make_project, run, tiny_params
from rnnops.apps.serving import load_pyfunc
from rnnops.core import behaviour
from rnnops.core.text import document_text
from rnnops.systems import tracking
from rnnops.testing.corpus import write_tiny_reuters

pytestmark = [pytest.mark.behavioural, pytest.mark.integration]

# A model that has learnt the generated topics: more documents and epochs than the
# tiny pipeline tests use, still seconds of training.
LEARNT = {
    "models.lstm.units": 16,
    "models.lstm.embedding_dim": 16,
    "pretrain.dim": 16,
    "models.lstm.epochs": 30,
    "models.lstm.early_stopping_patience": 5,
    "models.lstm.batch_size": 16,
    "models.lstm.learning_rate": 0.01,
}


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    base = tmp_path_factory.mktemp("behavioural")
    nltk_data = write_tiny_reuters(base / "nltk_data", n_train=150, n_test=60, seed=3)
    params = tiny_params(LEARNT)
    params["models"] = {"lstm": params["models"]["lstm"]}
    project, env = make_project(base / "project", nltk_data, params)
    uri = f"sqlite:///{base / 'mlflow.db'}"
    env["MLFLOW_TRACKING_URI"] = uri
    run([str(BIN_DIR / "dvc"), "repro"], project, env)
    # $MLFLOW_TRACKING_URI wins over the configured store (as for users), and the
    # developer's shell may set it: name this store there while the champion loads.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        tracking.use_tracking_uri(uri)
        pyfunc = load_pyfunc("models:/reuters-topics@champion")
    predictor = pyfunc.unwrap_python_model().predictor
    raw = pd.read_parquet(project / "data/raw/reuters.parquet")
    raw = raw[raw["split"] == "test"]
    texts = [
        document_text(t, x, include_title=True)
        for t, x in zip(raw["title"], raw["text"], strict=True)
    ]
    return predictor, texts


def _assert_ok(results):
    failed = [r for r in results if not r.ok]
    assert not failed, "\n".join(r.summary() + "\n  " + "\n  ".join(r.failures) for r in failed)


def test_casing_whitespace_and_sign_off_do_not_change_the_topic(champion):
    predictor, texts = champion
    results = behaviour.invariance_checks(predictor, texts)
    assert {r.name for r in results} == {
        "upper_case",
        "lower_case",
        "extra_whitespace",
        "reuter_sign_off",
    }
    assert all(r.cases == len(texts) for r in results)
    _assert_ok(results)


def test_adding_grain_sentences_raises_grain(champion):
    predictor, texts = champion
    tops = predictor.predict(texts)["top_topic"].tolist()
    others = [t for t, top in zip(texts, tops, strict=True) if top != "grain"]
    result = behaviour.directional_check(predictor, others, "grain")
    assert result.cases >= 30
    _assert_ok([result])


def test_obvious_headlines_get_their_topic(champion):
    predictor, _ = champion
    result = behaviour.minimum_functionality_check(predictor)
    # The generated corpus has three topics: grain, crude, earn (two headlines each).
    assert result.cases == 6
    _assert_ok([result])


def test_documents_without_evidence_get_no_topic(champion):
    predictor, texts = champion
    result = behaviour.no_evidence_check(predictor)
    _assert_ok([result])
    frame = predictor.predict(behaviour.no_evidence_texts())
    assert (frame["known_tokens"] == 0).all() and frame["note"].str.len().gt(0).all()
    # The rule costs real stories nothing: each has evidence and keeps its topics.
    real = predictor.predict(texts)
    assert (real["known_tokens"] > 0).all() and real["topics"].map(len).gt(0).all()
    assert (real["oov_rate"] < 0.5).mean() > 0.9
