import numpy as np
import pytest

from rnnops.config import ModelConfig
from rnnops.preprocess import Dataset
from rnnops.train import NonFiniteLossError, class_weight_vector, train_model


def toy(n=64, max_len=6, vocab=12, n_labels=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_labels, size=n).astype(np.int32)
    x = rng.integers(2, vocab, size=(n, max_len)).astype(np.int32)
    x[:, 0] = y + 2  # the label is readable from the first token
    ids = np.array([f"d{i}" for i in range(n)])
    return Dataset(x=x, y=y, doc_ids=ids, lengths=np.full(n, max_len))


CFG = ModelConfig(
    kind="gru", units=4, embedding_dim=4, epochs=2, batch_size=16, early_stopping_patience=0
)


def weights_of(seed):
    data = toy()
    cfg = CFG.model_copy(update={"seed": seed})
    model, history, _ = train_model(cfg, data, data, "singlelabel", 12, 3)
    return model.get_weights(), history


def test_history_has_one_row_per_epoch():
    _, history = weights_of(0)
    assert history["epoch"].tolist() == [1, 2]
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history.columns)


def test_history_times_every_epoch_within_the_fit():
    cfg = CFG.model_copy(update={"epochs": 3})
    _, history, fit_seconds = train_model(cfg, toy(), toy(), "singlelabel", 12, 3)
    assert len(history["seconds"]) == len(history["cpu_seconds"]) == 3
    assert (history["seconds"] > 0).all() and (history["cpu_seconds"] > 0).all()
    assert history["seconds"].sum() <= fit_seconds + 1e-3
    # The first epoch also traces the training and validation functions.
    assert history["seconds"].iloc[0] > history["seconds"].iloc[1:].max()


def test_non_finite_loss_fails_training():
    import keras

    class PoisonWeights(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            emb = self.model.get_layer("embedding")
            emb.set_weights([np.full_like(w, np.nan) for w in emb.get_weights()])

    data = toy()
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        train_model(CFG, data, data, "singlelabel", 12, 3, callbacks=[PoisonWeights()])


def test_class_weights_favour_rare_classes():
    y = np.array([0] * 90 + [1] * 10)
    w = class_weight_vector(y, 2, "singlelabel")
    assert w[1] > w[0]
    assert w[1] / w[0] == pytest.approx(9.0)


@pytest.mark.parametrize(
    "monitor, task, expected",
    [
        ("val_loss", "singlelabel", ("val_loss", "min")),
        ("val_score", "singlelabel", ("val_accuracy", "max")),
        ("val_score", "multilabel", ("val_micro_f1", "max")),
    ],
)
def test_early_stopping_watches_the_configured_column(monitor, task, expected):
    from rnnops.train import monitored

    assert monitored(CFG.model_copy(update={"early_stopping_monitor": monitor}), task) == expected


def test_val_score_monitor_keeps_the_best_scoring_epoch():
    from rnnops.train import summarize

    data = toy()
    cfg = CFG.model_copy(
        update={"epochs": 4, "early_stopping_patience": 4, "early_stopping_monitor": "val_score"}
    )
    model, history, seconds = train_model(cfg, data, data, "singlelabel", 12, 3)
    assert "val_accuracy" in history
    summary = summarize("m", cfg, "singlelabel", model, history, seconds, data, data)
    best = history.loc[history["val_accuracy"].idxmax()]
    assert summary.best_epoch == int(best["epoch"])
    # The restored weights are the best epoch's: evaluating them gives its accuracy.
    _, accuracy = model.evaluate(data.x, data.y, verbose=0)
    assert accuracy == pytest.approx(float(best["val_accuracy"]), abs=1e-6)


def test_refit_learns_from_the_validation_documents():
    from rnnops.train import refit_model, summarize

    # Topic 2 appears only among the validation documents: the early-stopped model
    # cannot know it; refitting on train + validation teaches it.
    data = toy()
    train = Dataset(
        x=data.x[data.y < 2],
        y=data.y[data.y < 2],
        doc_ids=data.doc_ids[data.y < 2],
        lengths=data.lengths[data.y < 2],
    )
    val = Dataset(
        x=data.x[data.y == 2],
        y=data.y[data.y == 2],
        doc_ids=data.doc_ids[data.y == 2],
        lengths=data.lengths[data.y == 2],
    )
    cfg = CFG.model_copy(
        update={"learning_rate": 0.1, "refit_epochs": 30, "refit_learning_rate_scale": 0.5}
    )
    model, history, fit_seconds = train_model(cfg, train, val, "singlelabel", 12, 3)
    before = model.predict(val.x, verbose=0).argmax(1)
    assert (before == 2).mean() < 0.5
    seconds = refit_model(model, cfg, train, val, "singlelabel", 3)
    assert seconds > 0
    assert (model.predict(val.x, verbose=0).argmax(1) == 2).mean() > 0.9
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    summary = summarize(
        "m", cfg, "singlelabel", model, history, fit_seconds, train, val, None, seconds
    )
    assert summary.refit_epochs == 30
    assert summary.train_seconds == pytest.approx(fit_seconds + seconds, abs=2e-3)
    assert summary.seconds_per_epoch == pytest.approx(fit_seconds / len(history), abs=2e-3)


def test_no_refit_leaves_the_weights_as_early_stopping_chose_them():
    from rnnops.train import refit_model

    data = toy()
    model, _, _ = train_model(CFG, data, data, "singlelabel", 12, 3)
    before = model.get_weights()
    assert refit_model(model, CFG, data, data, "singlelabel", 3) == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
