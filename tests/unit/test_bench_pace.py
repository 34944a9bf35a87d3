"""The speed benchmark's pacing: two training processes run their epochs in turns."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from speed import paced_pair  # noqa: E402

# A paced child: a tiny Keras model, 3 epochs; prints when each epoch's work ran and
# when its code after `fit` started.
CHILD = f"""
import json, sys, time
sys.path.insert(0, {str(BENCH)!r})
import numpy as np
import keras
from pace import channel_from_env, install

spans = []

class Span(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        spans.append([time.time()])
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.2)
        spans[-1].append(time.time())

install(channel_from_env())
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = (x[:, 0] > 0).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
model.compile(loss="binary_crossentropy", optimizer="sgd")
model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[Span()])
print(json.dumps({{"spans": spans, "after_fit": time.time()}}))
"""


def test_paced_processes_take_turns_one_epoch_at_a_time(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-c", CHILD]
    result = paced_pair({"a": cmd, "b": cmd}, tmp_path, env, tmp_path)

    seen = {k: json.loads(result[k]["stdout"].strip().splitlines()[-1]) for k in ("a", "b")}
    spans = sorted((start, end, side) for side, out in seen.items() for start, end in out["spans"])
    # Epochs never overlap, and the sides alternate, in the order given.
    assert [side for _, _, side in spans] == ["a", "b"] * 3
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    # Neither side's work after fit overlaps an epoch of the other.
    last_epoch_end = spans[-1][1]
    assert all(out["after_fit"] >= last_epoch_end for out in seen.values())
    for side in ("a", "b"):
        # The pace times each epoch's own work (the 0.2 s end-of-epoch callback
        # included), not the other side's epochs it waited through.
        own = [end - start for start, end in seen[side]["spans"]]
        paced = result[side]["seconds"]
        assert len(paced) == len(result[side]["cpu_seconds"]) == 3
        assert all(p >= o for p, o in zip(paced, own, strict=True))
        assert all(p < o + 0.15 for p, o in zip(paced[1:], own[1:], strict=True))
        assert result[side]["peak_mib"] > 0


def test_a_side_that_fails_stops_the_pair_with_its_error(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    crash = [sys.executable, "-c", "import sys; sys.exit('no data/processed/train.npz')"]
    waits = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(RuntimeError, match=r"(?s)stage closed its pace pipe.*train\.npz"):
        paced_pair({"stage": crash, "bare": waits}, tmp_path, env, tmp_path)
