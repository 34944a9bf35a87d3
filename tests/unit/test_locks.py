"""Locks between processes: who holds one, how long a caller waits, and nothing left over."""

import subprocess
import sys
import time

import pytest

from rnnops.systems.locks import LockTimeout, acquire, hold, holder_file, release

HOLDER = (
    "import sys, time\n"
    "from rnnops.systems.locks import hold\n"
    "with hold(sys.argv[1], 5):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(float(sys.argv[2]))\n"
)


def held_elsewhere(path, seconds):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_names_its_holder_and_is_free_once_released(tmp_path):
    path = tmp_path / "sub" / "x.lock"
    proc = held_elsewhere(path, 60)
    try:
        with pytest.raises(LockTimeout, match=f"pid {proc.pid}.*at once") as info:
            acquire(path, 0)
        assert info.value.holder == f"pid {proc.pid}"
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="after 1s"):
            acquire(path, 1)
        assert time.monotonic() - started >= 0.9
    finally:
        proc.kill()
        proc.wait()
    lock = acquire(path, 5)  # the dead holder's lock is free
    release(lock)
    assert not holder_file(path).exists()


def test_a_waiting_caller_gets_the_lock_when_the_holder_lets_go(tmp_path):
    path = tmp_path / "x.lock"
    proc = held_elsewhere(path, 1)
    started = time.monotonic()
    with hold(path, 30):
        assert time.monotonic() - started > 0.3
    proc.wait()
