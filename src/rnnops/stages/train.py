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

log = logging.getLogger(__name__)

TRAIN_OUTPUTS = ("model.keras", "history.csv", "train.json", VAL_SCORES)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


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


def monitored(cfg: ModelConfig, task: str) -> tuple[str, str]:
    """The history column early stopping watches, and whether lower ('min') or higher is better."""
    if cfg.early_stopping_monitor == "val_loss":
        return "val_loss", "min"
    return ("val_accuracy" if task == "singlelabel" else "val_micro_f1"), "max"


def epoch_progress(epoch: int, epochs: int, epoch_seconds: float, elapsed: float) -> str:
    """``3/20 4.1s (elapsed 12.3s, at most 70s left)``; early stopping may end sooner."""
    left = elapsed / epoch * (epochs - epoch)
    return (
        f"{epoch}/{epochs} {epoch_seconds:.1f}s (elapsed {elapsed:.1f}s, at most {left:.0f}s left)"
    )


def _callbacks(cfg: ModelConfig, extra: Sequence, task: str = "multilabel") -> list:
    import keras

    class FailOnNonFiniteLoss(keras.callbacks.Callback):
        """Keras' TerminateOnNaN stops fit but returns normally; this fails it.

        Checked once per epoch: an epoch's loss is the mean over its batches, so one
        non-finite batch shows, and no batch-level hook makes Keras wait for every
        step (which would cost throughput).
        """

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                if "loss" in key and not math.isfinite(float(value)):
                    raise NonFiniteLossError(
                        f"non-finite {key} ({value}) after epoch {epoch + 1}; lower the "
                        "learning rate or enable clipnorm in params.yaml"
                    )

    class Progress(keras.callbacks.Callback):
        """One line per epoch as it ends: where training is and how long is left."""

        def on_train_begin(self, logs=None):
            self._fit_start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            shown = " ".join(
                f"{k}={float(v):.4f}" for k, v in (logs or {}).items() if k != "learning_rate"
            )
            log.info(
                "epoch %s %s",
                epoch_progress(epoch + 1, cfg.epochs, now - self._start, now - self._fit_start),
                shown,
            )

    callbacks = [FailOnNonFiniteLoss(), Progress()]
    if cfg.early_stopping_patience > 0:
        monitor, mode = monitored(cfg, task)
        stopping = keras.callbacks.EarlyStopping if mode == "min" else score_early_stopping()
        callbacks.append(
            stopping(
                monitor=monitor,
                mode=mode,
                patience=cfg.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    return callbacks + list(extra)


def score_early_stopping():
    """EarlyStopping on a validation score whose patience starts at the first non-zero score.

    A model whose output starts at the label priors scores every topic below the 0.5 of
    the validation micro-F1 for its first epochs: a score of 0 there means it has not
    started to predict yet, not that it has stopped improving.
    """
    import keras

    class ScoreEarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.started = False

        def on_epoch_end(self, epoch, logs=None):
            if not self.started and (logs or {}).get(self.monitor) == 0:
                return
            self.started = True
            super().on_epoch_end(epoch, logs)

    return ScoreEarlyStopping


def epoch_clock():
    """A Keras callback that times each epoch, from its start to the next one's.

    First in the callback list, each interval covers the epoch's training steps, its
    validation and every other callback's end-of-epoch work (the last one ends when
    ``fit`` does). ``seconds`` (wall) and ``cpu_seconds`` (the process's CPU time, every
    thread's) have one entry per epoch run.
    """
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks: list[tuple[float, float]] = []

        def _mark(self):
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_epoch_begin(self, epoch, logs=None):
            self._mark()

        def on_train_end(self, logs=None):
            self._mark()

        @property
        def seconds(self) -> list[float]:
            return np.diff([wall for wall, _ in self.marks]).tolist()

        @property
        def cpu_seconds(self) -> list[float]:
            return np.diff([cpu for _, cpu in self.marks]).tolist()

    return EpochClock()


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
        callbacks=[clock, *_callbacks(cfg, callbacks, task)],
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
        callbacks=_callbacks(
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
