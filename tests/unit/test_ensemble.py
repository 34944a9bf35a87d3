import json

import numpy as np
import pytest

from rnnops.core.config import ModelConfig
from rnnops.core.models import build_model, load_model
from rnnops.stages.ensemble import EnsembleError, combine, run_ensemble


def member(kind: str, n_labels: int = 4, max_len: int = 10, task: str = "multilabel", seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(kind=kind, units=4, embedding_dim=3, pooling="max", embedding_skip=["mean"])
    return build_model(cfg, vocab_size=30, n_labels=n_labels, max_len=max_len, task=task)


def ids(rows: int = 6, max_len: int = 10) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 30, size=(rows, max_len)).astype("int32")


@pytest.mark.parametrize("task", ["multilabel", "singlelabel"])
def test_ensemble_scores_are_the_mean_of_the_members(task):
    a, b = member("simple_rnn", task=task, seed=1), member("lstm", task=task, seed=2)
    x = ids()
    expected = (a.predict(x, verbose=0) + b.predict(x, verbose=0)) / 2
    model = combine({"srnn": a, "lstm": b}, "pair")
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    if task == "singlelabel":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_members_built_for_other_data_are_refused():
    with pytest.raises(EnsembleError, match="disagree on input length or labels"):
        combine({"a": member("lstm", n_labels=4), "b": member("gru", n_labels=5)})
    with pytest.raises(EnsembleError, match="disagree on input length or labels"):
        combine({"a": member("lstm", max_len=10), "b": member("gru", max_len=12)})
    with pytest.raises(EnsembleError, match="mix output activations"):
        combine({"a": member("lstm"), "b": member("gru", task="singlelabel")})
    with pytest.raises(EnsembleError, match="at least two members"):
        combine({"a": member("lstm")})


def test_run_ensemble_writes_a_loadable_model_and_its_summary(tmp_path):
    models = tmp_path / "models"
    x = ids()
    scores = []
    for i, (name, kind) in enumerate([("srnn", "simple_rnn"), ("gru", "gru")]):
        model = member(kind, seed=i)
        (models / name).mkdir(parents=True)
        model.save(models / name / "model.keras")
        (models / name / "train.json").write_text(json.dumps({"train_seconds": 10.0 + i}))
        np.save(models / name / "val_scores.npy", np.full((4, 3), float(i)))
        scores.append(model.predict(x, verbose=0))
    out = tmp_path / "ensembles" / "pair"
    summary = run_ensemble("pair", ["srnn", "gru"], models, out, run_id="abc")
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "train.json", "val_scores.npy"]
    # Its held-out validation scores are the mean of its members'.
    np.testing.assert_allclose(np.load(out / "val_scores.npy"), np.full((4, 3), 0.5))
    info = json.loads((out / "train.json").read_text())
    assert info["members"] == ["srnn", "gru"] and info["kind"] == "ensemble"
    assert info["train_seconds"] == 21.0 and info["mlflow_run_id"] == "abc"
    assert summary.trainable_params == sum(
        int(w.numpy().size)
        for m in ("srnn", "gru")
        for w in load_model(models / m / "model.keras").trainable_weights
    )
    loaded = load_model(out / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), np.mean(scores, axis=0), rtol=1e-5)


def test_members_without_held_out_scores_are_refused(tmp_path):
    models = tmp_path / "models"
    for name in ("srnn", "gru"):
        (models / name).mkdir(parents=True)
        member("simple_rnn").save(models / name / "model.keras")
    np.save(models / "srnn" / "val_scores.npy", np.zeros((4, 3)))
    out = tmp_path / "ensembles" / "pair"
    with pytest.raises(EnsembleError, match=r"no val_scores.npy for gru .*dvc repro train@gru"):
        run_ensemble("pair", ["srnn", "gru"], models, out)
    assert not out.exists() or not any(out.iterdir())


def test_missing_member_names_the_stage_to_run_and_writes_nothing(tmp_path):
    models = tmp_path / "models"
    (models / "srnn").mkdir(parents=True)
    member("simple_rnn").save(models / "srnn" / "model.keras")
    out = tmp_path / "ensembles" / "pair"
    with pytest.raises(EnsembleError, match=r"no trained model for lstm .*dvc repro train@lstm"):
        run_ensemble("pair", ["srnn", "lstm"], models, out)
    assert not out.exists()
