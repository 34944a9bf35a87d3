"""Where a run comes from: git commit, DVC data hash, Prefect and sweep context, process."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from pathlib import Path

import yaml

from rnnops.core import contract
from rnnops.systems.tracking.store import project_root

log = logging.getLogger(__name__)


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(root: Path) -> str | None:
    """The commit checked out at ``root`` (None outside git)."""
    return _git(Path(root), "rev-parse", "HEAD")


def dvc_locked_hash(stage: str, out_path: str, cwd: Path | None = None) -> str | None:
    """The hash DVC recorded in ``dvc.lock`` for ``out_path`` of ``stage``."""
    lock = Path(cwd or os.getcwd()) / "dvc.lock"
    if not lock.exists():
        return None
    data = yaml.safe_load(lock.read_text()) or {}
    for out in (data.get("stages", {}).get(stage, {}) or {}).get("outs", []):
        if out.get("path") == out_path:
            return out.get("md5") or out.get("hash")
    return None


def lineage_tags(data_hash: str | None, cwd: Path | None = None) -> dict[str, str]:
    from rnnops import __version__

    cwd = Path(cwd or os.getcwd())
    commit = _git(cwd, "rev-parse", "HEAD")
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    tags = {
        "mlflow.source.git.commit": commit or "unknown",
        "rnnops.git.commit": commit or "unknown",
        "rnnops.git.dirty": "unknown" if status is None else str(bool(status)).lower(),
        contract.DATA_HASH_TAG: data_hash or "unknown",
        "rnnops.version": __version__,
        "rnnops.host": platform.node(),
        "rnnops.project_root": str(project_root(cwd)),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["rnnops.dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    for env, tag in contract.ENV_TAGS:
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


PID_TAG, HOST_TAG, STARTED_TAG = "rnnops.pid", "rnnops.host", "rnnops.pid_started"


def process_started(pid: int) -> str | None:
    """When process ``pid`` started (seconds since the epoch, rounded), or None if it is gone.

    A pid alone can be reused by an unrelated process; the pair (pid, start time) cannot.
    """
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def process_tags(pid: int | None = None) -> dict[str, str]:
    """Tags that tell whether the process running a run is still alive."""
    pid = pid or os.getpid()
    return {
        PID_TAG: str(pid),
        HOST_TAG: platform.node(),
        STARTED_TAG: process_started(pid) or "unknown",
    }
