"""A worker's own clone of the project: code from a git remote, data from the DVC remote.

Workers on other machines share nothing with the machine that starts a sweep but its
servers: the git remote (code and experiment refs), the DVC remote (data and models, a
bucket) and MLflow. A sweep pushes its commit to the git remote under
``refs/rnnops/sweeps/<sweep id>``; each worker brings its clone to that commit, pulls what
the DVC remote holds, runs its point as a DVC experiment and pushes the experiment back
(``dvc exp push``: the git ref to the git remote, its outputs to the DVC remote). The
sweep then pulls each finished experiment (``dvc exp pull``) and reads it as if it had
run locally.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rnnops.core import contract
from rnnops.systems.dvc_driver import StageError, raise_for_failure, run_dvc

SWEEP_REF_PREFIX = "refs/rnnops/sweeps"
RUN_REF_PREFIX = "refs/rnnops/runs"


class GitRemoteError(StageError):
    """The git remote refused or could not be reached: the message names the command."""


def _git(args: list[str], cwd: str | Path, timeout: float = 300) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise GitRemoteError(
            f"git {args[0]} failed in {cwd}: {proc.stderr.strip()[-500:]}",
            "git",
            proc.returncode,
            proc.stderr,
        )
    return proc.stdout


def sweep_ref(sweep_id: str) -> str:
    return f"{SWEEP_REF_PREFIX}/{sweep_id}"


def run_ref(run_id: str) -> str:
    """Where one pipeline run whose model stages go to workers publishes its commit."""
    return f"{RUN_REF_PREFIX}/{run_id}"


def publish_commit(root: str | Path, git_remote: str, ref: str) -> str:
    """Push ``HEAD`` to ``ref`` on the remote (:func:`sweep_ref`, :func:`run_ref`); return the commit.

    Uncommitted changes would not reach the workers, so they are refused here.
    """
    dirty = _git(["status", "--porcelain", "--untracked-files=no"], root).strip()
    if dirty:
        raise GitRemoteError(
            f"{root} has uncommitted changes ({dirty.splitlines()[0].strip()} ...): workers "
            "run committed code only; commit them, then rerun",
            "git",
            2,
            dirty,
        )
    commit = _git(["rev-parse", "HEAD"], root).strip()
    _git(["push", "--quiet", git_remote, f"HEAD:{ref}"], root)
    return commit


def worker_home() -> Path:
    """Where this worker keeps its clone (``RNNOPS_WORKER_HOME``, else ./rnnops-worker)."""
    return Path(os.environ.get(contract.WORKER_HOME_ENV) or Path.cwd() / "rnnops-worker")


def prepare_clone(home: str | Path, git_remote: str, ref: str, commit: str) -> Path:
    """The worker's clone of ``git_remote`` checked out at ``commit`` (cloned once)."""
    home = Path(home)
    dest = home / "project"
    if not (dest / ".git").exists():
        home.mkdir(parents=True, exist_ok=True)
        _git(["clone", "--quiet", "--no-checkout", git_remote, str(dest)], home)
    _git(["fetch", "--quiet", git_remote, f"+{ref}:{ref}"], dest)
    _git(["checkout", "--quiet", "--force", "--detach", commit], dest)
    # Tracked files exactly as committed; ignored ones (the DVC cache, outputs) stay.
    _git(["clean", "--quiet", "-fd"], dest)
    return dest


def point_remote_at(
    root: str | Path, remote_url: str | None, endpoint_url: str | None, env: dict | None = None
) -> None:
    """Make the team's bucket the clone's default DVC remote (in its local config only).

    ``remote_url`` (``DVC_REMOTE_URL``, e.g. s3://bucket/dvc) and ``endpoint_url`` (for
    a store that is not AWS's) come from the worker's environment; without them the
    clone keeps the default remote its committed ``.dvc/config`` names.
    """
    if not remote_url:
        return
    steps = [
        ["remote", "add", "--local", "--force", "team", remote_url],
        ["remote", "default", "--local", "team"],
        # Every object pulled is hashed: a corrupted one is refused, never trained on.
        ["remote", "modify", "--local", "team", "verify", "true"],
    ]
    if endpoint_url:
        steps.append(["remote", "modify", "--local", "team", "endpointurl", endpoint_url])
    for args in steps:
        raise_for_failure(run_dvc(args, root, env, 60), f"dvc {' '.join(args[:2])}")


def push_experiment(root: str | Path, git_remote: str, name: str, env: dict | None = None) -> None:
    """``dvc exp push``: the experiment's git ref to the git remote, its outputs to the DVC remote."""
    proc = run_dvc(["exp", "push", git_remote, name], root, env, 1800)
    raise_for_failure(proc, "exp push")


def pull_experiment(root: str | Path, git_remote: str, name: str, env: dict | None = None) -> None:
    """``dvc exp pull``: a worker's experiment into this project (ref and outputs).

    Points that finish together pull into the same repository; each waits for DVC's
    repository lock (:func:`run_dvc`) instead of failing a point that trained fine.
    """
    proc = run_dvc(["exp", "pull", git_remote, name], root, env, 1800)
    raise_for_failure(proc, "exp pull")
