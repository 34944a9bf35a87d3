"""Shared fixtures: a tiny generated corpus and a throwaway DVC project around it."""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from corpus import write_tiny_reuters
from rnnops.core.config import apply_overrides

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent

# The tiny pipeline trains two of the project's models: the article's network and the LSTM.
TINY_MODELS = ("rnn", "lstm")
# Small enough that a whole `dvc repro` takes seconds on two cores.
TINY_OVERRIDES = {
    "preprocess.max_len": 40,
    "preprocess.min_freq": 1,
    "preprocess.val_fraction": 0.25,
    # word2vec vectors as wide as the tiny models' embeddings, learned in a blink.
    "pretrain.dim": 8,
    "pretrain.epochs": 50,
    **{
        f"models.{name}.{key}": value
        for name in TINY_MODELS
        for key, value in {
            "units": 8,
            "embedding_dim": 8,
            "epochs": 1,
            "batch_size": 16,
        }.items()
    },
}


def tiny_params(extra: dict | None = None) -> dict:
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["models"] = {name: raw["models"][name] for name in TINY_MODELS}
    raw["ensembles"] = {}  # tests that need one add it
    return apply_overrides(raw, {**TINY_OVERRIDES, **(extra or {})})


@pytest.fixture(scope="session")
def tiny_nltk_data(tmp_path_factory) -> Path:
    return write_tiny_reuters(tmp_path_factory.mktemp("nltk_data"))


def project_env(nltk_data: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Each project names its own store. mlflow.set_tracking_uri (called by fixtures in this
    # process) also sets MLFLOW_TRACKING_URI in os.environ; inherited, it would send another
    # test's runs into that store.
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(
        NLTK_DATA=str(nltk_data),
        PATH=f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}",
        TF_CPP_MIN_LOG_LEVEL="3",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="rnnops-tests",
        GIT_AUTHOR_EMAIL="tests@rnnops.invalid",
        GIT_COMMITTER_NAME="rnnops-tests",
        GIT_COMMITTER_EMAIL="tests@rnnops.invalid",
    )
    env.update(extra)
    return env


def run(
    cmd: list[str], cwd: Path, env: dict, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def make_project(dest: Path, nltk_data: Path, params: dict | None = None) -> tuple[Path, dict]:
    """A fresh git + DVC repository holding the project's pipeline and code."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("dvc.yaml", "pyproject.toml", ".gitignore", ".dvcignore"):
        shutil.copy2(PROJECT_ROOT / item, dest / item)
    shutil.copytree(
        PROJECT_ROOT / "src",
        dest / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    (dest / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
    env = project_env(nltk_data)
    run(["git", "init", "-q", "-b", "main"], dest, env)
    run([str(BIN_DIR / "dvc"), "init", "-q"], dest, env)
    shutil.copy2(PROJECT_ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    run([str(BIN_DIR / "dvc"), "config", "core.analytics", "false"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-q", "-m", "tiny project"], dest, env)
    return dest, env


@pytest.fixture
def tiny_project(tmp_path, tiny_nltk_data) -> tuple[Path, dict]:
    project, env = make_project(tmp_path / "project", tiny_nltk_data)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return project, env


@pytest.fixture
def flow_project(tmp_path, tiny_nltk_data, monkeypatch):
    """A tiny project for flows run in this process: its env is this process's env."""
    project, env = make_project(tmp_path / "project", tiny_nltk_data)
    for key in ("NLTK_DATA", "PATH"):
        monkeypatch.setenv(key, env[key])
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    return project, env


def set_params(project: Path, overrides: dict) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(
        yaml.safe_dump(apply_overrides(raw, overrides), sort_keys=False)
    )


def both_models(**values) -> dict:
    return {f"models.{name}.{key}": value for name in TINY_MODELS for key, value in values.items()}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


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


def copy_project(src: Path, dest: Path) -> Path:
    """A copy of a project (git, DVC cache and local remote included) to change freely."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


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
            pytest.fail("mlflow server exited:\n" + (base / "server.log").read_text())
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


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    proc, url = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield url
    stop(proc)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server` on 127.0.0.1 for the session: (api url, env, base dir)."""
    base = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(base / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "2",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "5",
        "PREFECT_API_URL": url,
    }
    proc = start(
        [
            str(BIN_DIR / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
        ],
        env,
        base / "server.log",
    )

    def healthy():
        assert proc.poll() is None, (base / "server.log").read_text()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 120, "prefect server health")
        yield url, env, base
    finally:
        stop(proc)


# --------------------------------------------------------------------------- shared projects

_champion: dict = {}


def tiny_champion(tmp_path_factory, nltk_data: Path) -> tuple[Path, dict, str]:
    """One `dvc repro` (LSTM only) per test session, with a champion in a SQLite store."""
    if not _champion:
        base = tmp_path_factory.mktemp("champion")
        params = tiny_params()
        params["models"] = {"lstm": params["models"]["lstm"]}
        project, env = make_project(base / "project", nltk_data, params)
        uri = f"sqlite:///{base / 'mlflow.db'}"
        env["MLFLOW_TRACKING_URI"] = uri
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        run([str(BIN_DIR / "dvc"), "repro"], project, env)
        _champion.update(project=project, env=env, uri=uri)
    return _champion["project"], _champion["env"], _champion["uri"]


@pytest.fixture(scope="session")
def tracked(tmp_path_factory, tiny_nltk_data):
    """The whole tiny pipeline (rnn and lstm) reproduced once into a SQLite store."""
    import mlflow

    base = tmp_path_factory.mktemp("tracked")
    project, env = make_project(base / "project", tiny_nltk_data)
    uri = f"sqlite:///{base / 'mlflow.db'}"
    env["MLFLOW_TRACKING_URI"] = uri
    run([str(BIN_DIR / "dvc"), "repro"], project, env)
    mlflow.set_tracking_uri(uri)
    return project, env, mlflow.MlflowClient(uri)


SERVE_MAX_BODY_BYTES = 20_000
SERVE_MAX_DOCUMENTS = 8


@pytest.fixture(scope="session")
def champion(tmp_path_factory, tiny_nltk_data):
    """(project, env, client, champion version, in-process pyfunc) of the tiny champion."""
    import mlflow

    project, env, uri = tiny_champion(tmp_path_factory, tiny_nltk_data)
    client = mlflow.MlflowClient(uri)
    version = client.get_model_version_by_alias("reuters-topics", "champion").version
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/reuters-topics/{version}")
    return project, env, client, str(version), pyfunc


@pytest.fixture(scope="session")
def server(champion, tmp_path_factory):
    """`rnnops serve` of the tiny champion on 127.0.0.1, as an httpx client, for the session."""
    import httpx

    project, env, _, _, _ = champion
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    proc = start(
        [
            str(BIN_DIR / "rnnops"),
            "serve",
            "--port",
            str(port),
            "--max-body-bytes",
            str(SERVE_MAX_BODY_BYTES),
            "--max-documents",
            str(SERVE_MAX_DOCUMENTS),
        ],
        env,
        log_path,
        cwd=project,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy():
        assert proc.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 120, "rnnops serve health", interval=0.5)
        with httpx.Client(base_url=url, timeout=30) as client:
            client.log_path = log_path
            yield client
    finally:
        stop(proc)
