"""Shared fixtures: a tiny generated corpus and a throwaway DVC project around it."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rnnops.testing.corpus import write_tiny_reuters
from rnnops.testing.processes import free_port, start, start_mlflow_server, stop, wait_for
from rnnops.testing.projects import (
    BIN_DIR,
    PROJECT_ROOT,
    TINY_MODELS,
    TINY_OVERRIDES,
    both_models,
    copy_project,
    make_project,
    project_env,
    run,
    set_params,
    tiny_params,
)

# Tests import these helpers from conftest; they live in rnnops.testing.
__all__ = [
    "BIN_DIR",
    "PROJECT_ROOT",
    "TINY_MODELS",
    "TINY_OVERRIDES",
    "both_models",
    "copy_project",
    "free_port",
    "make_project",
    "project_env",
    "run",
    "set_params",
    "start",
    "start_mlflow_server",
    "stop",
    "tiny_params",
    "wait_for",
    "write_tiny_reuters",
]


# mlflow.set_tracking_uri also writes $MLFLOW_TRACKING_URI, which the code under test reads
# before its configured store (as users expect). Left set, it sends later tests of this
# process to another test's store; each test ends with the value the session started with.
_SESSION_TRACKING_ENV = os.environ.get("MLFLOW_TRACKING_URI")


def _restore_tracking_env() -> None:
    if _SESSION_TRACKING_ENV is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = _SESSION_TRACKING_ENV


def use_store_in_this_process(uri: str) -> None:
    """Point this process's MLflow at ``uri`` without exporting it to the environment."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    _restore_tracking_env()


# Files are handed to the test processes in collection order (`--no-loadscope-reorder`;
# xdist would start the files with the most tests first, the many quick unit files), the
# longest first so that no process is left with a long file at the end: the team-stack
# file, a third of the suite on one process; then, for `make test-fast`, the slowest unit
# files (Keras fits, the whole-corpus encoding, two paced Keras processes).
LONGEST_FILES_FIRST = (
    "tests/integration/test_stack.py",
    "tests/unit/test_train.py",
    "tests/unit/test_promote.py",
    "tests/unit/test_bench_pace.py",
    "tests/unit/test_text.py",
)


def pytest_collection_modifyitems(items):
    first = {path: rank for rank, path in enumerate(LONGEST_FILES_FIRST)}
    # A stable sort: every file keeps its own order of tests.
    items.sort(key=lambda item: first.get(item.nodeid.split("::", 1)[0], len(first)))


@pytest.fixture(autouse=True)
def _tracking_env_restored():
    yield
    _restore_tracking_env()


@pytest.fixture(scope="session")
def tiny_nltk_data(tmp_path_factory) -> Path:
    return write_tiny_reuters(tmp_path_factory.mktemp("nltk_data"))


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


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


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


def copy_of_tiny_champion(
    tmp_path_factory, nltk_data: Path, dest: Path, tracking_uri: str
) -> tuple[Path, dict]:
    """A copy of the session's reproduced tiny champion to change freely (its data stages
    already run), whose runs and models go to ``tracking_uri``: (project, env)."""
    src, env, _ = tiny_champion(tmp_path_factory, nltk_data)
    return copy_project(src, dest), {**env, "MLFLOW_TRACKING_URI": tracking_uri}


@pytest.fixture(scope="session")
def tracked(tmp_path_factory, tiny_nltk_data):
    """The whole tiny pipeline (rnn and lstm) reproduced once into a SQLite store."""
    import mlflow

    base = tmp_path_factory.mktemp("tracked")
    project, env = make_project(base / "project", tiny_nltk_data)
    uri = f"sqlite:///{base / 'mlflow.db'}"
    env["MLFLOW_TRACKING_URI"] = uri
    run([str(BIN_DIR / "dvc"), "repro"], project, env)
    use_store_in_this_process(uri)
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
    use_store_in_this_process(uri)
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
