import numpy as np
import pytest

from rnnops.config import ModelConfig
from rnnops.models import build_model, compile_model


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    "bidirectional, pooling, layers, skip",
    [(False, "last", 1, []), (True, "max", 2, ["max"]), (False, "max", 1, ["max", "mean"])],
)
@pytest.mark.parametrize("task, n_labels", [("multilabel", 5), ("singlelabel", 3)])
def test_output_shapes_for_every_kind(kind, bidirectional, pooling, layers, skip, task, n_labels):
    cfg = ModelConfig(
        kind=kind,
        embedding_skip=skip,
        bidirectional=bidirectional,
        pooling=pooling,
        layers=layers,
        units=4,
        embedding_dim=3,
        dropout=0.1,
    )
    model = compile_model(
        build_model(cfg, vocab_size=20, n_labels=n_labels, max_len=7, task=task), cfg, task
    )
    out = model.predict(np.random.default_rng(0).integers(0, 20, size=(2, 7)), verbose=0)
    assert out.shape == (2, n_labels)
    if task == "singlelabel":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    else:
        assert ((out > 0) & (out < 1)).all()


def test_article_architecture():
    cfg = ModelConfig(kind="simple_rnn", layers=2, units=6, embedding_dim=4, pooling="last")
    model = build_model(cfg, vocab_size=30, n_labels=4, max_len=9, task="singlelabel")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Embedding", "SimpleRNN", "SimpleRNN", "Dense"]
    assert model.layers[2].return_sequences and not model.layers[3].return_sequences


def test_max_pooling_ignores_padding_and_survives_save(tmp_path):
    import keras

    cfg = ModelConfig(kind="lstm", units=4, embedding_dim=3, pooling="max")
    model = build_model(cfg, vocab_size=20, n_labels=2, max_len=6, task="singlelabel")
    x = np.array([[5, 6, 7, 0, 0, 0]])
    longer = np.array([[5, 6, 7, 0, 0, 0, 0, 0, 0]])[:, :6]
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(longer, verbose=0))
    empty = np.zeros((1, 6), dtype=np.int32)
    assert np.isfinite(model.predict(empty, verbose=0)).all()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_embedding_skip_pools_real_tokens_only(tmp_path):
    import keras

    cfg = ModelConfig(kind="gru", units=4, embedding_dim=3, pooling="max", embedding_skip=["mean"])
    model = build_model(cfg, vocab_size=20, n_labels=2, max_len=6, task="multilabel")
    names = [layer.name for layer in model.layers]
    assert "embedding_mean" in names and "embedding_max" not in names
    x = np.array([[5, 6, 7, 0, 0, 0]])
    mean = keras.Model(model.input, model.get_layer("embedding_mean").output)
    table = model.get_layer("embedding").get_weights()[0]
    np.testing.assert_allclose(mean.predict(x, verbose=0)[0], table[[5, 6, 7]].mean(0), rtol=1e-5)
    empty = np.zeros((1, 6), dtype=np.int32)
    assert np.isfinite(model.predict(empty, verbose=0)).all()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, ("max",)),
        (False, ()),
        ("mean", ("mean",)),
        (["max", "mean"], ("max", "mean")),
        (["max", "mean", "attention"], ("max", "mean", "attention")),
    ],
)
def test_embedding_skip_values(value, expected):
    assert ModelConfig(kind="lstm", embedding_skip=value).embedding_skip == expected


def test_embedding_skip_rejects_unknown_and_repeated_poolings():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max"):
        ModelConfig(kind="lstm", embedding_skip=["sum"])
    with pytest.raises(ValidationError, match="twice"):
        ModelConfig(kind="lstm", embedding_skip=["max", "max"])


def test_attention_skip_is_a_weighted_mean_of_real_tokens(tmp_path):
    import keras

    cfg = ModelConfig(
        kind="simple_rnn", units=4, embedding_dim=3, pooling="max", embedding_skip=["attention"]
    )
    model = build_model(cfg, vocab_size=20, n_labels=3, max_len=6, task="singlelabel")
    layer = model.get_layer("embedding_attention")
    layer.set_weights([np.array([[1.0], [-2.0], [0.5]], dtype="float32")])
    x = np.array([[5, 6, 7, 0, 0, 0]])
    pooled = keras.Model(model.input, layer.output).predict(x, verbose=0)[0]
    vectors = model.get_layer("embedding").get_weights()[0][[5, 6, 7]]
    logits = vectors @ np.array([1.0, -2.0, 0.5])
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    np.testing.assert_allclose(pooled, weights @ vectors, rtol=1e-5)
    # The expected value uses the three real tokens only: padding carries no weight.
    assert np.isfinite(model.predict(np.zeros((1, 6), dtype=np.int32), verbose=0)).all()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
