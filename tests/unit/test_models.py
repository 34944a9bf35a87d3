import numpy as np
import pytest

from rnnops.core.config import ModelConfig
from rnnops.core.models import build_model, compile_model


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


@pytest.mark.parametrize("task, n_labels", [("multilabel", 5), ("singlelabel", 3)])
def test_skip_only_model_has_no_recurrent_layer(task, n_labels):
    cfg = ModelConfig(
        kind="lstm", layers=0, units=4, embedding_dim=3, embedding_skip=["max", "mean"]
    )
    model = build_model(cfg, vocab_size=20, n_labels=n_labels, max_len=7, task=task)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not kinds & {"SimpleRNN", "LSTM", "GRU", "Bidirectional"}
    assert "Embedding" in kinds and model.name == "bag_of_embeddings_classifier"
    out = model.predict(np.random.default_rng(0).integers(0, 20, size=(2, 7)), verbose=0)
    assert out.shape == (2, n_labels)
    # Its recurrent twin differs only by the layer between the embedding and the features.
    twin = build_model(
        cfg.model_copy(update={"layers": 1}), vocab_size=20, n_labels=n_labels, max_len=7, task=task
    )
    assert twin.count_params() > model.count_params()


def test_skip_only_model_needs_a_skip():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="embedding_skip"):
        ModelConfig(kind="lstm", layers=0)


def test_reading_backwards_ends_on_the_first_tokens():
    """With last-state pooling a backwards reader's output depends on the lead most."""
    cfg = ModelConfig(
        kind="simple_rnn", units=4, embedding_dim=3, pooling="last", read_backwards=True
    )
    model = build_model(cfg, vocab_size=20, n_labels=2, max_len=6, task="multilabel")
    assert "reverse_tokens" in [layer.name for layer in model.layers]
    x = np.array([[5, 6, 7, 0, 0, 0]])
    # Padding (now in front) is masked: more of it changes nothing.
    np.testing.assert_allclose(
        model.predict(x, verbose=0), model.predict(np.array([[5, 6, 7, 0, 0, 0]]), verbose=0)
    )
    import keras

    rnn = keras.Model(model.input, model.get_layer("simple_rnn_1").output)
    forward = build_model(
        cfg.model_copy(update={"read_backwards": False}),
        vocab_size=20,
        n_labels=2,
        max_len=6,
        task="multilabel",
    )
    forward.set_weights(model.get_weights())
    forward_rnn = keras.Model(forward.input, forward.get_layer("simple_rnn_1").output)
    # Reading 7, 6, 5 backwards is reading the reversed document forwards.
    np.testing.assert_allclose(
        rnn.predict(x, verbose=0),
        forward_rnn.predict(np.array([[7, 6, 5, 0, 0, 0]]), verbose=0),
        rtol=1e-5,
    )


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_state_pooling_ignores_padding(pooling):
    cfg = ModelConfig(kind="gru", units=4, embedding_dim=3, pooling=pooling, bidirectional=True)
    model = build_model(cfg, vocab_size=20, n_labels=2, max_len=6, task="multilabel")
    assert f"{pooling}_over_time" in [layer.name for layer in model.layers]
    short = build_model(cfg, vocab_size=20, n_labels=2, max_len=4, task="multilabel")
    short.set_weights(model.get_weights())
    np.testing.assert_allclose(
        model.predict(np.array([[5, 6, 7, 0, 0, 0]]), verbose=0),
        short.predict(np.array([[5, 6, 7, 0]]), verbose=0),
        rtol=1e-5,
    )


def test_prior_bias_starts_scores_at_the_label_frequencies():
    from rnnops.core.models import prior_bias

    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    cfg = ModelConfig(kind="lstm", units=4, embedding_dim=3)
    bias = prior_bias(y, 3, "multilabel")
    model = build_model(cfg, 20, 3, 5, "multilabel", output_bias=bias)
    np.testing.assert_allclose(model.get_layer("topics").get_weights()[1], bias)
    sigmoid = 1 / (1 + np.exp(-bias))
    np.testing.assert_allclose(sigmoid, [0.75, 0.25, 1e-4], rtol=1e-4)
    single = prior_bias(np.array([0, 0, 1, 2]), 4, "singlelabel")
    np.testing.assert_allclose(np.exp(single), [0.5, 0.25, 0.25, 1e-4], rtol=1e-5)
    zeros = build_model(
        cfg.model_copy(update={"output_bias": "zeros"}), 20, 3, 5, "multilabel", output_bias=bias
    )
    assert not zeros.get_layer("topics").get_weights()[1].any()


def test_cosine_schedule_warms_up_then_decays():
    from rnnops.core.models import learning_rate

    cfg = ModelConfig(
        kind="lstm", learning_rate=0.01, learning_rate_schedule="cosine", warmup_epochs=1, epochs=4
    )
    schedule = learning_rate(cfg, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 5, 10, 25, 39)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(0.01)
    assert rates[2] > rates[3] > rates[4] > 0
    assert learning_rate(cfg.model_copy(update={"learning_rate_schedule": "constant"}), 10) == 0.01


def test_skip_dropout_drops_the_whole_skip_of_a_document():
    import keras

    cfg = ModelConfig(
        kind="gru",
        units=4,
        embedding_dim=3,
        pooling="max",
        embedding_skip=["max", "mean"],
        skip_dropout=0.5,
    )
    model = build_model(cfg, vocab_size=20, n_labels=2, max_len=6, task="multilabel")
    skip = keras.Model(model.input, model.get_layer("skip_dropout").output)
    x = np.tile(np.array([[5, 6, 7, 0, 0, 0]]), (400, 1))
    dropped = skip(x, training=True).numpy()
    zero_rows = (dropped == 0).all(axis=1)
    # Whole documents' skips are zeroed (not single features), about half of them.
    assert 0.35 < zero_rows.mean() < 0.65
    assert ((dropped != 0).all(axis=1) | zero_rows).all()
    # At inference nothing is dropped.
    np.testing.assert_allclose(
        skip(x, training=False).numpy()[0], skip(x, training=False).numpy()[1]
    )
    assert not (skip(x, training=False).numpy() == 0).all(axis=1).any()


def test_fixed_embeddings_keep_their_starting_vectors():
    cfg = ModelConfig(
        kind="lstm", units=4, embedding_dim=6, pooling="max", embedding_trainable=False
    )
    start = np.random.default_rng(0).normal(size=(20, 6)).astype("float32")
    model = compile_model(
        build_model(cfg, 20, 3, 5, "multilabel", embeddings=start), cfg, "multilabel"
    )
    x = np.random.default_rng(1).integers(2, 20, size=(16, 5))
    y = np.random.default_rng(2).integers(0, 2, size=(16, 3)).astype("float32")
    before = model.get_layer("lstm_1").get_weights()[0].copy()
    model.fit(x, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0], start)
    # The rest of the network still learns.
    assert not np.array_equal(model.get_layer("lstm_1").get_weights()[0], before)


def test_a_lead_reader_sees_only_the_first_tokens_and_survives_save(tmp_path):
    from rnnops.core.models import load_model

    cfg = ModelConfig(
        kind="simple_rnn", layers=2, units=4, embedding_dim=3, read_backwards=True, lead_tokens=3
    )
    model = build_model(cfg, vocab_size=20, n_labels=2, max_len=6, task="multilabel")
    lead = np.array([[5, 6, 7, 8, 9, 10], [5, 6, 7, 0, 0, 0], [5, 6, 7, 11, 12, 13]])
    scores = model.predict(lead, verbose=0)
    # Whatever follows the first three tokens changes nothing.
    np.testing.assert_allclose(scores[1:], np.repeat(scores[:1], 2, axis=0), rtol=1e-6)
    other = model.predict(np.array([[9, 6, 7, 8, 9, 10]]), verbose=0)
    assert not np.allclose(other, scores[:1])
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(lead, verbose=0), scores)
    # A lead as long as the sequence is no crop at all.
    full = build_model(cfg.model_copy(update={"lead_tokens": 6}), 20, 2, 6, "multilabel")
    assert "lead_tokens" not in [layer.name for layer in full.layers]


def test_l2_penalises_the_recurrent_and_output_weights_only():
    plain = ModelConfig(kind="gru", units=4, embedding_dim=3, pooling="max")
    assert build_model(plain, 20, 2, 5, "multilabel").losses == []
    model = build_model(plain.model_copy(update={"l2": 0.01}), 20, 2, 5, "multilabel")
    # Input and recurrent kernels of the GRU, and the output kernel: three penalties.
    assert len(model.losses) == 3
    assert model.get_layer("embedding").embeddings_regularizer is None
