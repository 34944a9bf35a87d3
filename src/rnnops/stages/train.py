"""train: fit one recurrent model on the processed data.

Writes ``model.keras`` (Keras 3 native format), ``history.csv`` (one row per
epoch: its metrics, its wall time in ``seconds`` and this process's CPU time, all
threads, in ``cpu_seconds``), ``train.json`` (time, epochs, parameter count) and
``val_scores.npy`` into the output directory. ``val_scores.npy`` holds the
validation scores of the early-stopped model, taken before any refit: a refit trains
on the validation documents, so these are the held-out scores that tune the threshold
and select models downstream.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnops.core.config import ModelConfig
from rnnops.core.io import read_json, write_json
from rnnops.core.stage_files import VAL_SCORES
from rnnops.stages.preprocess import Dataset, load_dataset
from rnnops.stages.train_callbacks import (
    NonFiniteLossError,
    epoch_clock,
    monitored,
    stage_callbacks,
)

log = logging.getLogger(__name__)

TRAIN_OUTPUTS = ("model.keras", "history.csv", "train.json", VAL_SCORES)


@dataclass(frozen=True)
class TrainSummary:
    """What a train stage did. ``train_seconds`` is all of it, refit included;
    ``seconds_per_epoch`` is over the early-stopped epochs only."""

    model: str
    kind: str
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    trainable_params: int
    train_seconds: float
    seconds_per_epoch: float
    train_documents: int
    val_documents: int
    mlflow_run_id: str | None = None
    refit_epochs: int = 0
    refit_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def class_weight_vector(y: np.ndarray, n_labels: int, task: str) -> np.ndarray:
    """Balanced per-class weights (n / (k * count)), clipped to [0.1, 10]."""
    counts = np.bincount(y, minlength=n_labels) if task == "singlelabel" else y.sum(axis=0)
    counts = np.maximum(counts.astype(np.float64), 1.0)
    weights = len(y) / (n_labels * counts)
    return np.clip(weights, 0.1, 10.0)


def sample_weights(y: np.ndarray, n_labels: int, task: str) -> np.ndarray:
    weights = class_weight_vector(y, n_labels, task)
    if task == "singlelabel":
        return weights[y].astype(np.float32)
    # A multi-label document weighs as much as its rarest topic.
    return (y * weights).max(axis=1).astype(np.float32)


def fit_weights(cfg: ModelConfig, y: np.ndarray, n_labels: int, task: str) -> np.ndarray | None:
    """The per-document weights `fit` trains with: class-balanced, or none."""
    return sample_weights(y, n_labels, task) if cfg.class_weights else None


def _require_finite_weights(model, step: str) -> None:
    if not all(np.isfinite(w).all() for w in model.get_weights()):
        raise NonFiniteLossError(f"{step} left non-finite weights in the model")


def new_model(
    cfg: ModelConfig,
    train: Dataset,
    task: str,
    vocab_size: int,
    n_labels: int,
    embeddings: np.ndarray | None = None,
):
    """The compiled, untrained model ``train_model`` fits (its output bias from ``train``)."""
    from rnnops.core.models import build_model, compile_model, prior_bias

    model = build_model(
        cfg,
        vocab_size,
        n_labels,
        train.x.shape[1],
        task,
        prior_bias(train.y, n_labels, task),
        embeddings,
    )
    return compile_model(model, cfg, task, math.ceil(len(train.y) / cfg.batch_size))


def train_model(
    cfg: ModelConfig,
    train: Dataset,
    val: Dataset,
    task: str,
    vocab_size: int,
    n_labels: int,
    callbacks: Sequence = (),
    embeddings: np.ndarray | None = None,
):
    """Pure core: build, compile and fit a model; return it with its history."""
    seed_everything(cfg.seed)
    model = new_model(cfg, train, task, vocab_size, n_labels, embeddings)
    weights = fit_weights(cfg, train.y, n_labels, task)
    clock = epoch_clock()
    start = time.perf_counter()
    fit = model.fit(
        train.x,
        train.y,
        sample_weight=weights,
        validation_data=(val.x, val.y),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[clock, *stage_callbacks(cfg, callbacks, task)],
    )
    seconds = time.perf_counter() - start
    _require_finite_weights(model, "training")
    history = pd.DataFrame(fit.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    history["seconds"] = np.round(clock.seconds, 4)
    history["cpu_seconds"] = np.round(clock.cpu_seconds, 4)
    return model, history, seconds


def refit_model(
    model,
    cfg: ModelConfig,
    train: Dataset,
    val: Dataset,
    task: str,
    n_labels: int,
) -> float:
    """Pure core: ``cfg.refit_epochs`` more epochs on train + validation; returns seconds.

    Early stopping has already chosen the epoch on the validation documents; this lets
    the model learn from them too, at ``learning_rate * refit_learning_rate_scale`` so
    that it settles near the chosen weights rather than leaving them.
    """
    if cfg.refit_epochs == 0:
        return 0.0
    x = np.concatenate([train.x, val.x])
    y = np.concatenate([train.y, val.y])
    learning_rate = cfg.learning_rate * cfg.refit_learning_rate_scale
    if cfg.learning_rate_schedule == "constant":
        model.optimizer.learning_rate.assign(learning_rate)
    else:
        # A schedule cannot be assigned a number: a fresh optimizer at the refit's rate
        # (recompiling keeps the weights).
        from rnnops.core.models import compile_model

        compile_model(
            model,
            cfg.model_copy(
                update={"learning_rate": learning_rate, "learning_rate_schedule": "constant"}
            ),
            task,
        )
    log.info(
        "refit: %d epoch(s) on %d training + %d validation documents at learning rate %g",
        cfg.refit_epochs,
        len(train.y),
        len(val.y),
        learning_rate,
    )
    start = time.perf_counter()
    model.fit(
        x,
        y,
        sample_weight=fit_weights(cfg, y, n_labels, task),
        batch_size=cfg.batch_size,
        epochs=cfg.refit_epochs,
        shuffle=True,
        verbose=0,
        # No validation data to watch (it is being trained on): progress and the
        # non-finite-loss check only, and no per-epoch MLflow steps after the history.
        callbacks=stage_callbacks(
            cfg.model_copy(update={"early_stopping_patience": 0, "epochs": cfg.refit_epochs}),
            (),
            task,
        ),
    )
    seconds = time.perf_counter() - start
    _require_finite_weights(model, "refitting")
    return seconds


def summarize(
    name: str,
    cfg: ModelConfig,
    task: str,
    model,
    history: pd.DataFrame,
    seconds: float,
    train: Dataset,
    val: Dataset,
    run_id: str | None = None,
    refit_seconds: float = 0.0,
) -> TrainSummary:
    column, mode = monitored(cfg, task)
    best = int(history[column].idxmin() if mode == "min" else history[column].idxmax())
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    return TrainSummary(
        model=name,
        kind=cfg.kind,
        epochs_run=len(history),
        best_epoch=int(history.loc[best, "epoch"]),
        best_val_loss=float(history.loc[best, "val_loss"]),
        trainable_params=trainable,
        train_seconds=round(seconds + refit_seconds, 3),
        seconds_per_epoch=round(seconds / max(len(history), 1), 3),
        train_documents=len(train.y),
        val_documents=len(val.y),
        mlflow_run_id=run_id,
        refit_epochs=cfg.refit_epochs,
        refit_seconds=round(refit_seconds, 3),
    )


def initial_embeddings(
    cfg: ModelConfig, pretrained_dir: str | Path | None, vocab_size: int
) -> np.ndarray | None:
    """The vectors the embedding layer starts from: word2vec's, or None (random)."""
    if cfg.embedding_init == "random":
        return None
    if pretrained_dir is None:
        from rnnops.core.config import ConfigError

        raise ConfigError(
            "embedding_init: word2vec needs the pretrain stage's output: pass --pretrained "
            "data/pretrained (dvc repro pretrain)"
        )
    from rnnops.stages.pretrain import load_embeddings

    return load_embeddings(pretrained_dir, vocab_size, cfg.embedding_dim)


def run_train(
    name: str,
    cfg: ModelConfig,
    data_dir: str | Path,
    output_dir: str | Path,
    callbacks: Sequence = (),
    run_id: str | None = None,
    pretrained_dir: str | Path | None = None,
) -> TrainSummary:
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    labels = read_json(data_dir / "labels.json")
    vocab = read_json(data_dir / "vocab.json")
    train, val = load_dataset(data_dir, "train"), load_dataset(data_dir, "val")
    embeddings = initial_embeddings(cfg, pretrained_dir, len(vocab["tokens"]))
    model, history, seconds = train_model(
        cfg,
        train,
        val,
        labels["task"],
        len(vocab["tokens"]),
        len(labels["labels"]),
        callbacks,
        embeddings,
    )
    val_scores = model.predict(val.x, batch_size=256, verbose=0)
    refit_seconds = refit_model(model, cfg, train, val, labels["task"], len(labels["labels"]))
    summary = summarize(
        name, cfg, labels["task"], model, history, seconds, train, val, run_id, refit_seconds
    )
    # Everything is written to a temporary directory first and moved into place
    # only once complete, so a failure leaves no partial output behind.
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".train.", dir=output_dir))
    try:
        model.save(tmp / "model.keras")
        history.to_csv(tmp / "history.csv", index=False, float_format="%.6g")
        write_json(tmp / "train.json", asdict(summary))
        np.save(tmp / VAL_SCORES, val_scores)
        for item in TRAIN_OUTPUTS:
            os.replace(tmp / item, output_dir / item)
    except BaseException:
        for item in TRAIN_OUTPUTS:
            (output_dir / item).unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
