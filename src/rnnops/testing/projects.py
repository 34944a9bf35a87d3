"""Throwaway copies of the project: a tiny corpus, a git + DVC repository, its environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from rnnops.core.overrides import apply_overrides

# The source tree this package runs from (tests and benchmarks run from a checkout).
PROJECT_ROOT = Path(__file__).resolve().parents[3]
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


def project_env(nltk_data: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Each project names its own store; an inherited $MLFLOW_TRACKING_URI (the developer's,
    # or one mlflow.set_tracking_uri wrote in this process) would send its runs elsewhere.
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


def make_project(
    dest: Path, nltk_data: Path, params: dict | None = None, with_flows: bool = False
) -> tuple[Path, dict]:
    """A fresh git + DVC repository holding the project's pipeline and code.

    ``with_flows``: also the Prefect flows, for workers that run them from a clone.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("dvc.yaml", "pyproject.toml", ".gitignore", ".dvcignore"):
        shutil.copy2(PROJECT_ROOT / item, dest / item)
    for folder in ("src", *(["flows"] if with_flows else [])):
        shutil.copytree(
            PROJECT_ROOT / folder,
            dest / folder,
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


def set_params(project: Path, overrides: dict) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(
        yaml.safe_dump(apply_overrides(raw, overrides), sort_keys=False)
    )


def both_models(**values) -> dict:
    return {f"models.{name}.{key}": value for name in TINY_MODELS for key, value in values.items()}


def copy_project(src: Path, dest: Path) -> Path:
    """A copy of a project (git, DVC cache and local remote included) to change freely."""
    shutil.copytree(src, dest, symlinks=True)
    return dest
