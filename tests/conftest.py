"""Shared fixtures: a tiny generated corpus and a throwaway DVC project around it."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from corpus import write_tiny_reuters
from rnnops.config import apply_overrides

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent

# Small enough that a whole `dvc repro` takes seconds on two cores.
TINY_OVERRIDES = {
    "preprocess.max_len": 40,
    "preprocess.min_freq": 1,
    "preprocess.val_fraction": 0.25,
    **{
        f"models.{name}.{key}": value
        for name in ("rnn", "lstm")
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
    return apply_overrides(raw, {**TINY_OVERRIDES, **(extra or {})})


@pytest.fixture(scope="session")
def tiny_nltk_data(tmp_path_factory) -> Path:
    return write_tiny_reuters(tmp_path_factory.mktemp("nltk_data"))


def project_env(nltk_data: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
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


def set_params(project: Path, overrides: dict) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(
        yaml.safe_dump(apply_overrides(raw, overrides), sort_keys=False)
    )


def both_models(**values) -> dict:
    return {
        f"models.{name}.{key}": value for name in ("rnn", "lstm") for key, value in values.items()
    }


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


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(base / "server.log", "w")  # noqa: SIM115 - stays open for the server's lifetime
    proc = subprocess.Popen(
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
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        assert proc.poll() is None, (base / "server.log").read_text()
    else:
        proc.kill()
        pytest.fail("mlflow server did not become healthy:\n" + (base / "server.log").read_text())
    yield url
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    log.close()
