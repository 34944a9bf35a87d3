"""The served network: Keras models run for request-sized inputs.

``Model.predict`` builds a data pipeline on every call (about 50 ms here for one
document). :class:`OnlineKerasModel` calls ``predict_on_batch`` instead: the same compiled
function, run on the array directly. :class:`CompiledKerasModel` goes further: XLA
compiles the network once per batch size from a fixed set (as TF Serving's
``allowed_batch_sizes``), and a call pads its rows up to the nearest size. A recurrent
network on CPU spends most of a small call stepping TensorFlow's loop op by op; compiled,
the loop runs as one program: the default champion answers one document in a fraction of
the time (bench/serving.py). On large batches the compiled call can be the slower one, so
each size runs whichever of the two was faster when the model loaded. Every size is
compiled, checked against ``predict_on_batch`` and timed before the model serves, so no
request pays for a compilation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Compiled scores may differ from the uncompiled network's by float rounding only.
MAX_DEVIATION = 1e-4


class CompiledNetworkError(RuntimeError):
    """The network could not be compiled, or its compiled scores differ from its own."""


class OnlineKerasModel:
    """A Keras model whose ``predict`` runs ``predict_on_batch`` on chunks of ``batch_size``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, x: Any, batch_size: int = 256, verbose: int = 0) -> Any:
        parts = [
            np.asarray(self.model.predict_on_batch(x[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts) if parts else np.asarray(self.model.predict(x, verbose=0))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def _best_time(call, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def padded_size(rows: int, batch_sizes: Sequence[int]) -> int:
    """The smallest compiled size that holds ``rows`` (at most the largest size)."""
    return next((size for size in batch_sizes if size >= rows), batch_sizes[-1])


class CompiledKerasModel:
    """The network compiled by XLA for ``batch_sizes``; see the module docstring.

    Rows beyond the largest size go in chunks of it. Padding rows are all padding
    tokens; their scores are computed and dropped (rows never mix in these networks).
    """

    def __init__(self, model: Any, batch_sizes: Sequence[int]) -> None:
        import tensorflow as tf

        if not batch_sizes:
            raise ValueError("batch_sizes must name at least one size")
        self.model = model
        self.batch_sizes = sorted(set(batch_sizes))
        self._call = tf.function(lambda x: model(x, training=False), jit_compile=True)
        self.uncompiled_sizes: set[int] = set()

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        size = padded_size(len(chunk), self.batch_sizes)
        if size in self.uncompiled_sizes:
            return np.asarray(self.model.predict_on_batch(chunk))
        return self._run_compiled(chunk, size)

    def _run_compiled(self, chunk: np.ndarray, size: int) -> np.ndarray:
        if size != len(chunk):
            padded = np.zeros((size, *chunk.shape[1:]), dtype=chunk.dtype)
            padded[: len(chunk)] = chunk
            chunk = padded
        return np.asarray(self._call(chunk))

    def predict(self, x: Any, batch_size: int = 256, verbose: int = 0) -> np.ndarray:
        x = np.asarray(x, dtype=np.int32)
        largest = self.batch_sizes[-1]
        parts = [
            self._run(x[i : i + largest])[: len(x[i : i + largest])]
            for i in range(0, len(x), largest)
        ]
        if not parts:
            return np.asarray(self.model.predict_on_batch(x))
        return np.concatenate(parts)

    def compile_and_check(self, ids: np.ndarray) -> float:
        """Compile every size on rows of ``ids`` (repeated to fill it) and time it beside
        ``predict_on_batch``; sizes where the compiled call is not faster run uncompiled
        (large batches of a small network, say). Return the largest deviation from
        ``predict_on_batch``. Raises :class:`CompiledNetworkError`."""
        worst = 0.0
        self.uncompiled_sizes = set()
        for size in self.batch_sizes:
            rows = np.resize(np.asarray(ids, dtype=np.int32), (size, ids.shape[1]))
            try:
                got = self._run_compiled(rows, size)
            except Exception as exc:  # XLA refuses some ops; the caller falls back
                raise CompiledNetworkError(
                    f"XLA could not compile the network for {size} rows: {type(exc).__name__}: "
                    f"{str(exc)[:300]}"
                ) from exc
            want = np.asarray(self.model.predict_on_batch(rows))
            worst = max(worst, float(np.max(np.abs(got - want))))
            compiled_s = _best_time(lambda rows=rows, size=size: self._run_compiled(rows, size))
            if _best_time(lambda rows=rows: self.model.predict_on_batch(rows)) <= compiled_s:
                self.uncompiled_sizes.add(size)
        if not np.isfinite(worst) or worst > MAX_DEVIATION:
            raise CompiledNetworkError(
                f"the compiled network's scores differ from the network's by {worst:.2g} "
                f"(more than {MAX_DEVIATION:g})"
            )
        return worst

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def serving_network(model: Any, batch_sizes: Sequence[int], check_ids: np.ndarray) -> Any:
    """The fastest form of ``model`` that gives its scores: compiled for ``batch_sizes``
    when XLA can (checked on ``check_ids``), else ``predict_on_batch``; ``batch_sizes``
    empty means never compile."""
    if batch_sizes:
        try:
            compiled = CompiledKerasModel(model, batch_sizes)
            worst = compiled.compile_and_check(check_ids)
        except CompiledNetworkError as exc:
            log.warning("serving the network uncompiled: %s", exc)
        else:
            log.info(
                "network compiled by XLA for batch sizes %s (largest deviation %.1g); "
                "uncompiled, as faster: %s",
                ",".join(
                    str(s) for s in compiled.batch_sizes if s not in compiled.uncompiled_sizes
                ),
                worst,
                ",".join(map(str, sorted(compiled.uncompiled_sizes))) or "none",
            )
            return compiled
    return OnlineKerasModel(model)
