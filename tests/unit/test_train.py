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
