"""Servers and background processes for tests and benchmarks: start, wait, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from rnnops.testing.projects import BIN_DIR, PROJECT_ROOT


class NotReadyError(TimeoutError):
    """What was waited for did not happen in time."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise NotReadyError(f"timed out after {timeout:.0f}s waiting for {what}")


def start(cmd, env, log_path, cwd=PROJECT_ROOT):
    """A background process in its own session (so :func:`stop` ends its children too)."""
    log = open(log_path, "w")  # noqa: SIM115 - open for the process's lifetime
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc, timeout: float = 30):
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def start_mlflow_server(base: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on 127.0.0.1 with a SQLite backend under ``base``; waits until healthy."""
    base.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = start(
        [
            str(BIN_DIR / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{base / 'backend.db'}",
            "--artifacts-destination",
            str(base / "artifacts"),
            "--workers",
            "1",
        ],
        {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        base / "server.log",
        cwd=base,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy():
        if proc.poll() is not None:
            raise NotReadyError("mlflow server exited:\n" + (base / "server.log").read_text())
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 120, "mlflow server health", interval=0.5)
    except BaseException:
        stop(proc)
        raise
    return proc, url
