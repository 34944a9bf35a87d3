"""Locks between processes on one machine (filelock): one place for every lock file.

The store's first creation, the registry's champion alias and the workspace's pipeline
runs are each serialised by an exclusive lock on a file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout


class LockTimeout(TimeoutError):
    """Another process held the lock for longer than the caller would wait."""

    def __init__(self, message: str, holder: str | None) -> None:
        super().__init__(message)
        self.holder = holder


def holder_file(path: Path) -> Path:
    # Beside the lock, not in it: a failed attempt to take a filelock truncates its file.
    return path.with_name(path.name + ".holder")


def acquire(path: str | Path, timeout: float) -> FileLock:
    """Take an exclusive lock on ``path``; wait at most ``timeout`` seconds (0: do not wait).

    The holder's pid is written beside the lock so that whoever waits can say who holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        holder = holder_file(path)
        who = holder.read_text().strip() if holder.exists() else None
        waited = "at once" if timeout == 0 else f"after {timeout:.0f}s"
        raise LockTimeout(
            f"lock {path} is held by {who or 'another process'} (gave up {waited})", who
        ) from None
    holder_file(path).write_text(f"pid {os.getpid()}")
    return lock


def release(lock: FileLock) -> None:
    with contextlib.suppress(OSError):
        holder_file(Path(lock.lock_file)).unlink()
    lock.release()


@contextlib.contextmanager
def hold(path: str | Path, timeout: float) -> Iterator[None]:
    """:func:`acquire` for the block; released however it ends."""
    lock = acquire(path, timeout)
    try:
        yield
    finally:
        release(lock)
