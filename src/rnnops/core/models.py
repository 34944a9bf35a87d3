"""Keras 3 model builders for the recurrent family."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from rnnops.core.config import ModelConfig


@keras.saving.register_keras_serializable(package="rnnops")
class MaskedGlobalMaxPooling1D(layers.Layer):
    """Max over time that ignores padded steps (Keras' GlobalMaxPooling1D drops the mask)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            mask = keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)
            inputs = inputs * mask + (1.0 - mask) * keras.ops.cast(-1e9, inputs.dtype)
            pooled = keras.ops.max(inputs, axis=1)
            # A document with no tokens at all pools to zeros, not -1e9.
            return keras.ops.where(pooled <= -1e8, keras.ops.zeros_like(pooled), pooled)
        return keras.ops.max(inputs, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="rnnops")
class MaskedGlobalAveragePooling1D(layers.Layer):
    """Mean over the real (unpadded) steps; a document with no tokens pools to zeros."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return keras.ops.mean(inputs, axis=1)
        mask = keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)
        total = keras.ops.sum(inputs * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="rnnops")
class MaskedAttentionPooling1D(layers.Layer):
    """A learned weighted mean over the real steps: softmax(x_t . w) over t, padding excluded.

    The weights let the classifier lean on the words that carry the topic rather than
    on every word alike; a document with no tokens pools to zeros.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        self.score = self.add_weight(
            name="score", shape=(input_shape[-1], 1), initializer="glorot_uniform"
        )

    def call(self, inputs, mask=None):
        logits = keras.ops.matmul(inputs, self.score)
        if mask is None:
            return keras.ops.sum(keras.ops.softmax(logits, axis=1) * inputs, axis=1)
        mask = keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)
        logits = logits + (1.0 - mask) * keras.ops.cast(-1e9, inputs.dtype)
        weights = keras.ops.softmax(logits, axis=1) * mask
        return keras.ops.sum(weights * inputs, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="rnnops")
class ReverseTokens(layers.Layer):
    """Token ids in reverse order: a recurrent layer then reads each document backwards.

    With post padding the padding moves to the front, where the embedding's mask makes
    the recurrent layers carry their state through it unchanged, so the last state is
    the one that has just read the document's first tokens (the title and the lead).
    """

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="rnnops")
class LeadTokens(layers.Layer):
    """The first ``count`` token ids of each document: a model that reads only the lead."""

    def __init__(self, count: int, **kwargs):
        super().__init__(**kwargs)
        self.count = count

    def call(self, inputs):
        return inputs[:, : self.count]

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        return (input_shape[0], self.count if steps is None else min(self.count, steps))

    def get_config(self):
        return {**super().get_config(), "count": self.count}


_SKIP_POOLING = {
    "max": MaskedGlobalMaxPooling1D,
    "mean": MaskedGlobalAveragePooling1D,
    "attention": MaskedAttentionPooling1D,
}
_RECURRENT = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


def _l2(cfg: ModelConfig):
    return keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None


def prior_bias(y: np.ndarray, n_labels: int, task: str) -> np.ndarray:
    """The output bias whose scores equal the training label frequencies.

    Log-odds for independent sigmoid outputs, log-frequencies for a softmax; frequencies
    are clipped away from 0 and 1 so that a label absent from training stays finite.
    """
    if task == "singlelabel":
        freq = np.bincount(y, minlength=n_labels) / max(len(y), 1)
        return np.log(np.clip(freq, 1e-4, 1.0)).astype("float32")
    freq = np.clip(np.asarray(y, dtype="float64").mean(axis=0), 1e-4, 1 - 1e-4)
    return np.log(freq / (1 - freq)).astype("float32")


def build_model(
    cfg: ModelConfig,
    vocab_size: int,
    n_labels: int,
    max_len: int,
    task: str,
    output_bias: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> keras.Model:
    """Embedding → recurrent stack → pooling over its states → Dense.

    ``task='multilabel'`` gives independent sigmoid outputs; ``'singlelabel'`` a
    softmax. With ``layers=2, kind=simple_rnn, pooling=last`` this is the
    article's Embedding → SimpleRNN → SimpleRNN → Dense network. ``layers=0`` has no
    recurrent layer: the embedding skip alone feeds the classifier (bag of embeddings).
    ``output_bias`` starts the output layer (see ``prior_bias``); ``embeddings`` (vocab x
    embedding_dim) the embedding layer, which then fine-tunes them.
    """
    if cfg.kind not in _RECURRENT:
        raise ValueError(f"unknown model kind {cfg.kind!r}; allowed: {', '.join(_RECURRENT)}")
    inputs = keras.Input(shape=(max_len,), dtype="int32", name="token_ids")
    tokens = inputs
    if cfg.lead_tokens is not None and cfg.lead_tokens < max_len:
        tokens = LeadTokens(cfg.lead_tokens, name="lead_tokens")(tokens)
    if cfg.read_backwards:
        tokens = ReverseTokens(name="reverse_tokens")(tokens)
    x = layers.Embedding(
        vocab_size,
        cfg.embedding_dim,
        # Zeros draw no random numbers, so the layers after it get the same initial
        # weights as when the vectors were given as the initializer.
        embeddings_initializer="uniform" if embeddings is None else "zeros",
        mask_zero=cfg.mask_padding,
        trainable=cfg.embedding_trainable,
        name="embedding",
    )(tokens)
    if cfg.spatial_dropout > 0:
        x = layers.SpatialDropout1D(cfg.spatial_dropout, name="spatial_dropout")(x)
    embedded = x
    x = _recurrent_states(cfg, x)
    if cfg.embedding_skip:
        x = _with_embedding_skip(cfg, x, embedded)
    if cfg.dropout > 0:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    activation = "softmax" if task == "singlelabel" else "sigmoid"
    outputs = layers.Dense(
        n_labels, activation=activation, kernel_regularizer=_l2(cfg), name="topics"
    )(x)
    name = f"{cfg.kind}_classifier" if cfg.layers else "bag_of_embeddings_classifier"
    model = keras.Model(inputs, outputs, name=name)
    # Starting values are assigned, not passed as Constant initializers: an initializer's
    # value is saved in the model's config, which would then hold the whole embedding matrix.
    if embeddings is not None:
        model.get_layer("embedding").embeddings.assign(np.asarray(embeddings, dtype="float32"))
    if cfg.output_bias == "prior" and output_bias is not None:
        model.get_layer("topics").bias.assign(np.asarray(output_bias, dtype="float32"))
    return model


def _recurrent_states(cfg: ModelConfig, x):
    """The recurrent stack over the embedded tokens, pooled over its states (or its last)."""
    rnn_cls = _RECURRENT[cfg.kind]
    for i in range(cfg.layers):
        last = i == cfg.layers - 1
        return_sequences = not last or cfg.pooling != "last"
        rnn = rnn_cls(
            cfg.units,
            return_sequences=return_sequences,
            dropout=cfg.dropout,
            recurrent_dropout=cfg.recurrent_dropout,
            kernel_regularizer=_l2(cfg),
            recurrent_regularizer=_l2(cfg),
            name=f"{cfg.kind}_{i + 1}",
        )
        if cfg.bidirectional:
            rnn = layers.Bidirectional(rnn, name=f"bi_{cfg.kind}_{i + 1}")
        x = rnn(x)
    if cfg.layers and cfg.pooling != "last":
        x = _SKIP_POOLING[cfg.pooling](name=f"{cfg.pooling}_over_time")(x)
    return x


def _with_embedding_skip(cfg: ModelConfig, x, embedded):
    """The pooled embeddings beside the recurrent features (alone when there are no layers)."""
    skips = [_SKIP_POOLING[p](name=f"embedding_{p}")(embedded) for p in cfg.embedding_skip]
    if cfg.skip_dropout > 0 and cfg.layers:
        # One draw per document for the whole skip: noise_shape broadcasts over features.
        skip = layers.Concatenate(name="skip")(skips) if len(skips) > 1 else skips[0]
        skips = [layers.Dropout(cfg.skip_dropout, noise_shape=(None, 1), name="skip_dropout")(skip)]
    features = [x, *skips] if cfg.layers else skips
    return layers.Concatenate(name="features")(features) if len(features) > 1 else features[0]


def learning_rate(cfg: ModelConfig, steps_per_epoch: int):
    """The optimizer's learning rate: a number, or a warm-up + cosine-decay schedule."""
    if cfg.learning_rate_schedule == "constant":
        return cfg.learning_rate
    total = max(cfg.epochs * steps_per_epoch, 1)
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate if warmup == 0 else cfg.learning_rate / 100,
        decay_steps=total - warmup,
        warmup_target=cfg.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(cfg: ModelConfig, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    kwargs = {"learning_rate": learning_rate(cfg, steps_per_epoch)}
    if cfg.clipnorm:
        kwargs["clipnorm"] = cfg.clipnorm
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(**kwargs)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs)
    return keras.optimizers.SGD(**kwargs)


def compile_model(
    model: keras.Model, cfg: ModelConfig, task: str, steps_per_epoch: int = 1
) -> keras.Model:
    if task == "singlelabel":
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    else:
        loss = "binary_crossentropy"
        metrics = [keras.metrics.F1Score(average="micro", threshold=0.5, name="micro_f1")]
    model.compile(optimizer=make_optimizer(cfg, steps_per_epoch), loss=loss, metrics=metrics)
    return model


def load_model(path) -> keras.Model:
    """Load a saved model in Keras safe mode (refuses Lambda layers and arbitrary code).

    Importing this module registers the project's custom layers first.
    """
    return keras.saving.load_model(path, safe_mode=True)
