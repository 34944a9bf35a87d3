"""The served network: XLA-compiled for fixed batch sizes, or predict_on_batch."""

from __future__ import annotations

import numpy as np
import pytest

from rnnops.apps.serving_network import (
    CompiledKerasModel,
    OnlineKerasModel,
    padded_size,
    serving_network,
)


def test_padded_size_is_the_smallest_that_holds_the_rows():
    sizes = [1, 2, 4, 8]
    assert [padded_size(n, sizes) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 8]


@pytest.fixture(scope="module")
def recurrent_net():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(12,), dtype="int32")
    x = keras.layers.Embedding(50, 8, mask_zero=True)(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(6))(x)
    outputs = keras.layers.Dense(3, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def test_compiled_network_gives_the_networks_scores_in_order(recurrent_net):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, size=(11, 12)).astype("int32")
    ids[:, 9:] = 0  # trailing padding, as the encoder writes it
    compiled = CompiledKerasModel(recurrent_net, [4, 1, 2])
    assert compiled.batch_sizes == [1, 2, 4]
    assert compiled.compile_and_check(ids[:3]) < 1e-5
    assert compiled.uncompiled_sizes <= {1, 2, 4}  # those timed slower compiled
    want = np.asarray(recurrent_net.predict_on_batch(ids))
    for uncompiled in (set(), {1, 2, 4}):  # each size either way gives the same scores
        compiled.uncompiled_sizes = uncompiled
        got = compiled.predict(ids)  # chunks of 4, 4 and 3 (padded to 4 when compiled)
        assert got.shape == want.shape == (11, 3)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert compiled.predict(ids[:0]).shape == (0, 3)


def test_a_network_that_cannot_be_compiled_is_served_uncompiled(recurrent_net, caplog):
    class Refusing:
        def __call__(self, x, training=False):
            raise RuntimeError("no XLA kernel for this op")

        def predict_on_batch(self, x):
            return recurrent_net.predict_on_batch(x)

    ids = np.ones((2, 12), dtype="int32")
    served = serving_network(Refusing(), [1, 2], ids)
    assert isinstance(served, OnlineKerasModel)
    assert "uncompiled" in caplog.text and "no XLA kernel" in caplog.text
    np.testing.assert_allclose(served.predict(ids), recurrent_net.predict_on_batch(ids))
    assert isinstance(serving_network(recurrent_net, [], ids), OnlineKerasModel)
    assert isinstance(serving_network(recurrent_net, [1, 2], ids), CompiledKerasModel)
