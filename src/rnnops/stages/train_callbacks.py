"""The train stage's Keras callbacks: progress lines, early stopping, non-finite losses, epoch clocks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np

from rnnops.core.config import ModelConfig

log = logging.getLogger("rnnops.stages.train")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


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


def stage_callbacks(cfg: ModelConfig, extra: Sequence, task: str = "multilabel") -> list:
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
