"""A tracking store that is not there, not answering, or not a store: one line, in seconds.

Real processes: the stage and the apps (``rnnops train``, ``doctor``, ``reproduce``,
``serve``) run as subprocesses against servers in this process that refuse connections,
accept and never answer, or answer 5xx / 404, and against SQLite files that are no MLflow
store.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import BIN_DIR, free_port, project_env, tiny_champion, tiny_params
from reliability.test_tracking_faults import http_env, train_cmd

pytestmark = pytest.mark.integration

RNNOPS = str(BIN_DIR / "rnnops")
# The bound for a stage against a dead, hung or failing server.
FAIL_WITHIN_S = 15.0


@contextlib.contextmanager
def fake_server(answer: bytes | None):
    """A TCP server on 127.0.0.1: replies ``answer`` to each request, or never (None)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()
    held: list[socket.socket] = []

    def serve():
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)  # a hung server keeps the connection open and silent
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(answer)
                    conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def http_answer(status: str) -> bytes:
    body = b"<html>busy</html>"
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


SERVERS = {
    "refused": None,
    "hung": ("hang", "did not answer within"),
    "503": (http_answer("503 Service Unavailable"), "answered HTTP 503"),
    "500": (http_answer("500 Internal Server Error"), "answered HTTP 500"),
    "not mlflow (404)": (http_answer("404 Not Found"), "not an MLflow tracking server"),
}


@contextlib.contextmanager
def server_of(kind: str):
    if kind == "refused":
        yield f"http://127.0.0.1:{free_port()}", "refused the connection"
        return
    answer, expected = SERVERS[kind]
    with fake_server(None if answer == "hang" else answer) as url:
        yield url, expected


@pytest.fixture
def project(tmp_path_factory, tiny_nltk_data):
    project, env, _ = tiny_champion(tmp_path_factory, tiny_nltk_data)
    return project, env


@pytest.mark.parametrize("kind", list(SERVERS))
def test_train_stage_fails_within_15s_naming_the_uri_and_what_to_check(project, tmp_path, kind):
    project, env = project
    params = tmp_path / "params.yaml"
    params.write_text(__import__("yaml").safe_dump(tiny_params()))
    with server_of(kind) as (url, expected):
        started = time.monotonic()
        proc = subprocess.run(
            train_cmd(str(params), tmp_path / "out"),
            cwd=project,
            env=http_env(env, MLFLOW_TRACKING_URI=url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if "rnnops train: error" in line]
    assert len(error) == 1, proc.stderr[-2000:]
    assert url in error[0] and "MLFLOW_TRACKING_URI" in error[0] and expected in error[0]
    assert "Traceback" not in proc.stderr
    assert elapsed < FAIL_WITHIN_S, f"{kind}: the stage took {elapsed:.1f}s"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def sqlite_of_something_else(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers (name) VALUES ('ada')")
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_stores_that_are_not_stores_get_one_line_and_are_left_untouched(tmp_path, tiny_nltk_data):
    text = tmp_path / "notes.db"
    text.write_text("these are my notes\n")
    foreign = sqlite_of_something_else(tmp_path / "shop.db")
    truncated = tmp_path / "half.db"
    truncated.write_bytes(b"SQLite format 3\x00" + b"\x00" * 40)
    cases = {
        text: "is not a SQLite database",
        foreign: "SQLite database of something else (tables: customers)",
        tmp_path: "is a directory",
        truncated: "cannot be read as SQLite",
    }
    before = {p: digest(p) for p in cases if p.is_file()}
    env = project_env(tiny_nltk_data)
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(tiny_params()))
    for path, expected in cases.items():
        for command in (["doctor"], ["reproduce", "--run-id", "0" * 32]):
            proc = subprocess.run(
                [RNNOPS, *command],
                cwd=tmp_path,
                env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{path}"},
                capture_output=True,
                text=True,
                timeout=120,
            )
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2, (path, command, proc.stderr[-2000:])
            assert len(lines) == 1 and expected in lines[0], (path, command, lines)
            assert "SELECT" not in proc.stderr and "MLFLOW_TRACKING_URI" in lines[0]
    assert {p: digest(p) for p in before} == before


def test_serve_and_reproduce_on_an_empty_store_say_what_is_missing(tmp_path, tiny_nltk_data):
    env = project_env(tiny_nltk_data)
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(tiny_params()))
    store = tmp_path / "fresh.db"
    uri = f"sqlite:///{store}"
    cases = [
        (["reproduce", "--run-id", "0" * 32], "no MLflow store at"),
        (["serve", "--port", str(free_port())], "no MLflow store at"),
    ]
    for command, expected in cases:
        proc = subprocess.run(
            [RNNOPS, *command],
            cwd=tmp_path,
            env={**env, "MLFLOW_TRACKING_URI": uri},
            capture_output=True,
            text=True,
            timeout=120,
        )
        errors = [line for line in proc.stderr.splitlines() if ": error:" in line]
        assert proc.returncode == 2, (command, proc.stderr[-2000:])
        assert len(errors) == 1 and expected in errors[0] and "dvc repro" in errors[0]
        assert not store.exists(), "a command that reads runs must not create an empty store"
