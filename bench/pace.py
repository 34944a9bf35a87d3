"""Epoch pacing for the speed benchmark: two training processes take turns, one epoch each.

On a shared machine an epoch can take twice as long as the one before it with no change
in the work done, and such slow stretches last minutes. Timed one after the other, whole
fits of the train stage and of the bare loop land in different stretches. Paced, they
run side by side and take turns: the driver (`take_turns`) lets one process run one
epoch while the other waits, then the other, so each epoch of one side has an epoch of
the other side right beside it in time.

Each process's `Pace` callback, first in the callback list, blocks at the start of every
epoch until the driver says go, and times the epoch from that moment to the start of the
next one (the last one to the end of `fit`): training, validation and every other
callback's end-of-epoch work, without its own waits. At the end of `fit` it sends its
times and waits once more, so neither side's work after `fit` (saving, logging) overlaps
an epoch of the other.

    python bench/pace.py ARGS...    # `rnnops ARGS...`, every `model.fit` paced

The pipes to the driver are the file descriptors named by RNNOPS_PACE_FDS ("READ,WRITE").
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

ENV = "RNNOPS_PACE_FDS"


class PipeClosed(EOFError):
    """The process at the other end of a pace pipe closed it (it exited or crashed)."""

    def __init__(self, name: str):
        super().__init__(f"{name} closed its pace pipe")
        self.name = name


class Channel:
    """One line-based pipe pair between the driver and a paced process."""

    def __init__(self, read_fd: int, write_fd: int, name: str = ""):
        self.name = name
        self._reader = os.fdopen(read_fd, "r", buffering=1)
        self._writer = os.fdopen(write_fd, "w", buffering=1)

    def send(self, message: str) -> None:
        self._writer.write(message + "\n")
        self._writer.flush()

    def recv(self) -> str:
        line = self._reader.readline()
        if not line:
            raise PipeClosed(self.name or "the other side")
        return line.rstrip("\n")

    def close(self) -> None:
        for f in (self._reader, self._writer):
            with contextlib.suppress(OSError):
                f.close()


def pace_callback(channel: Channel):
    """The Keras callback that waits for its turn at every epoch and times the epochs."""
    import keras

    class Pace(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []
            self.callback_seconds: list[float] = []
            self._start: tuple[float, float] | None = None
            self._steps_end = 0.0

        def _close_epoch(self) -> None:
            if self._start is not None:
                wall, cpu = self._start
                self.seconds.append(time.perf_counter() - wall)
                self.cpu_seconds.append(time.process_time() - cpu)
                self.callback_seconds.append(time.perf_counter() - self._steps_end)
                self._start = None

        def _turn(self, message: str) -> None:
            channel.send(message)
            reply = channel.recv()
            if reply != "go":
                raise RuntimeError(f"pace driver sent {reply!r}, expected 'go'")

        def on_epoch_begin(self, epoch, logs=None):
            self._close_epoch()
            self._turn("ready")
            self._start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            self._steps_end = time.perf_counter()

        def on_train_end(self, logs=None):
            self._close_epoch()
            times = {
                "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds,
                "callback_seconds": self.callback_seconds,
            }
            self._turn("end " + json.dumps(times))

    return Pace()


def take_turns(channels: list[Channel]) -> list[dict]:
    """Driver: one epoch at a time, in list order, until every side's `fit` has ended.

    Returns each side's {"seconds": [...], "cpu_seconds": [...]}, one entry per epoch.
    Both sides are released together once the last one has ended.
    """
    results: list[dict | None] = [None] * len(channels)
    pending: dict[int, str] = {}
    while any(r is None for r in results):
        for i, channel in enumerate(channels):
            if results[i] is not None:
                continue
            message = pending.pop(i) if i in pending else channel.recv()
            if message.startswith("end "):
                results[i] = json.loads(message[4:])
                continue
            if message != "ready":
                raise RuntimeError(f"{channel.name} sent {message!r}")
            channel.send("go")
            # The epoch runs; its end is the process's next message.
            pending[i] = channel.recv()
    for channel in channels:
        channel.send("go")
    return results  # type: ignore[return-value]


def install(channel: Channel) -> None:
    """Put a `Pace` first in the callbacks of every `keras.Model.fit` in this process."""
    import keras

    fit = keras.Model.fit

    def paced_fit(self, *args, callbacks=None, **kwargs):
        return fit(self, *args, callbacks=[pace_callback(channel), *(callbacks or [])], **kwargs)

    keras.Model.fit = paced_fit


def channel_from_env() -> Channel:
    read_fd, write_fd = (int(fd) for fd in os.environ[ENV].split(","))
    return Channel(read_fd, write_fd, "driver")


def main(argv: list[str]) -> int:
    from rnnops.apps.cli import main as rnnops_main

    install(channel_from_env())
    return rnnops_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
