"""Running the DVC pipeline from Python: stage order, single stages, experiments.

The flows in ``flows/`` orchestrate these calls; DVC stays the one definition of
the pipeline (``dvc.yaml``) and the one cache, so no stage list is kept here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Exit statuses of `rnnops <stage>`: 2 means the input is wrong (retrying cannot
# help), 1 an unexpected, possibly transient failure.
EXIT_INVALID_INPUT = 2

_EXITED = re.compile(r"exited with (-?\d+)")
_BUSY = ("Unable to acquire lock", "is busy", "Lock file", "already running")


class StageError(RuntimeError):
    """A DVC stage failed."""

    def __init__(self, message: str, stage: str, exit_code: int | None, output: str):
        super().__init__(message)
        self.stage, self.exit_code, self.output = stage, exit_code, output

    @property
    def transient(self) -> bool:
        return self.exit_code not in (EXIT_INVALID_INPUT, 143, 130)


class InvalidInputError(StageError):
    """The stage rejected its input (params, corpus, data): deterministic, never retried."""

    transient = False  # type: ignore[assignment]


class RepositoryBusyError(StageError):
    """Another DVC process holds the repository lock."""

    transient = False  # type: ignore[assignment]


class CorruptLockError(StageError):
    """DVC's lock file is unreadable (a dvc process was killed while writing it)."""

    transient = False  # type: ignore[assignment]


class DataIntegrityError(StageError):
    """Data from the DVC remote is missing or failed its hash check: never trained on."""

    transient = False  # type: ignore[assignment]


@dataclass(frozen=True)
class StageResult:
    stage: str
    ran: bool
    seconds: float
    output: str
    # Its outputs came from DVC's run cache (the same stage already ran, e.g. on a worker).
    restored: bool = False


@contextlib.contextmanager
def workspace_lock(root: str | Path) -> Iterator[None]:
    """Hold the workspace for one pipeline run; fail at once, never wait, if another holds it.

    DVC releases its own repository lock while a stage's command runs, so two
    overlapping `dvc repro` can both proceed; the flows take this lock instead.
    """
    from rnnops.systems.locks import LockTimeout, acquire, release

    path = Path(root) / ".dvc" / "tmp" / "rnnops-workspace.lock"
    try:
        lock = acquire(path, timeout=0)
    except LockTimeout as exc:
        raise RepositoryBusyError(
            f"the workspace {root} is busy: a pipeline run ({exc.holder or 'another process'}) "
            f"holds {path}. Wait for it to finish; runs with overrides (DVC experiments) do "
            "not need the workspace.",
            "workspace",
            None,
            "",
        ) from None
    try:
        yield
    finally:
        release(lock)


def dvc_bin() -> str:
    candidate = Path(sys.executable).parent / "dvc"
    return str(candidate) if candidate.exists() else "dvc"


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Stage output is read line by line as it is printed (live progress), not at the end.
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


LineSink = Callable[[str], None]


def run_dvc(
    args: list[str],
    root: str | Path,
    env: dict | None = None,
    timeout: float | None = None,
    on_line: LineSink | None = None,
) -> subprocess.CompletedProcess:
    """``dvc ARGS`` in ``root``, its output streamed (:func:`run_streaming`).

    Another dvc process holding the repository's lock (a user's ``dvc status``, a sweep's
    points pulling their experiments at the same moment) is waited for, not failed on:
    DVC holds it only between stages, and ``timeout`` still bounds the whole command.
    """
    cmd = [dvc_bin(), "--wait-for-lock", *args]
    return run_streaming(cmd, root, env or subprocess_env(), timeout, on_line)


def run_streaming(
    cmd: list[str],
    cwd: str | Path,
    env: dict | None = None,
    timeout: float | None = None,
    on_line: LineSink | None = None,
) -> subprocess.CompletedProcess:
    """Run ``cmd``; stdout and stderr interleaved as printed.

    Each line goes to ``on_line`` the moment it is printed, so a long stage shows its
    progress while it runs; the whole output comes back in ``stdout`` as well.
    """
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, expire) if timeout else None
    if timer:
        timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        proc.wait()
    finally:
        if timer:
            timer.cancel()
        if proc.poll() is None:  # interrupted while reading: leave no dvc behind
            proc.kill()
            proc.wait()
    output = "".join(lines)
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(proc.args, timeout or 0, output=output)
    return subprocess.CompletedProcess(proc.args, proc.returncode, output, "")


def stage_order(root: str | Path) -> list[str]:
    """Pipeline stages in the order DVC resolves from ``dvc.yaml`` (dependencies first)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph.reverse(copy=True)
        stages = nx.lexicographical_topological_sort(graph, key=lambda s: s.name or "")
        return [s.name for s in stages if s.name]


MODEL_STAGES = ("train", "evaluate")


def model_stage_groups(order: list[str], changed: list[str]) -> dict[str, list[str]]:
    """The per-model stages that need work, grouped by model: ``{NAME: [train@NAME, evaluate@NAME]}``.

    One model's stages depend on no other model's, so each group can run on its own
    machine. A model is in it when either of its stages changed (its evaluation alone may
    have changed); both stages go in its group, and DVC skips whichever is up to date.
    """
    changed_set, groups = set(changed), {}
    for stage in order:
        kind, _, name = stage.partition("@")
        if kind in MODEL_STAGES and name:
            groups.setdefault(name, []).append(stage)
    return {name: stages for name, stages in groups.items() if changed_set.intersection(stages)}


def changed_stages(root: str | Path, env: dict | None = None) -> list[str]:
    """Stages whose deps, params, code or outputs changed (``dvc status``)."""
    proc = subprocess.run(
        [dvc_bin(), "--wait-for-lock", "status", "--json"],
        cwd=root,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    raise_for_failure(proc, "status")
    # Only stdout: the JSON, without the warnings DVC prints on stderr.
    status = json.loads(proc.stdout or "{}")
    return sorted(name.split(":")[-1] for name in status)


RWLOCK = Path(".dvc") / "tmp" / "rwlock"


def recover_dvc_locks(root: str | Path) -> list[str]:
    """Make DVC usable again after a ``kill -9``; return what was done, for the log.

    DVC itself drops entries of dead processes from ``.dvc/tmp/rwlock`` (with a warning),
    but a lock file left unreadable (killed mid-write) stops every later ``dvc`` command.
    Call this only while holding :func:`workspace_lock`, so no pipeline run is using it.
    """
    path = Path(root) / RWLOCK
    if not path.exists():
        return []
    try:
        json.loads(path.read_text() or "{}")
        return []
    except (ValueError, UnicodeDecodeError):
        aside = path.with_name(f"rwlock.corrupt-{int(time.time())}")
        os.replace(path, aside)
        return [
            f"DVC's lock file {path} was unreadable (a dvc process killed while writing it); "
            f"moved aside to {aside.name} so the pipeline can run"
        ]


def raise_for_failure(proc: subprocess.CompletedProcess, stage: str) -> None:
    if proc.returncode == 0:
        return
    output = (proc.stdout or "") + (proc.stderr or "")
    if "Unable to read RWLock-file" in output:
        raise CorruptLockError(
            f"DVC's lock file .dvc/tmp/rwlock is corrupt (a dvc process was killed while "
            f"writing it); stage {stage} not run. When no dvc command is running, remove it "
            "(rm .dvc/tmp/rwlock); the training flow does this itself.",
            stage,
            proc.returncode,
            output,
        )
    if any(marker in output for marker in _BUSY):
        raise RepositoryBusyError(
            f"the DVC repository is busy (another dvc process holds its lock); stage {stage} not run. "
            "Wait for it to finish, or remove .dvc/tmp/rwlock if that process is gone.",
            stage,
            proc.returncode,
            output,
        )
    codes = _EXITED.findall(output)
    code = int(codes[-1]) if codes else proc.returncode
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    detail = "\n".join(errors[-5:]) or output[-1500:]
    cls = InvalidInputError if code == EXIT_INVALID_INPUT else StageError
    raise cls(f"stage {stage} failed (exit {code}):\n{detail}", stage, code, output)


def run_stage(
    root: str | Path,
    stage: str,
    env: dict | None = None,
    timeout: float | None = None,
    on_line: LineSink | None = None,
    pull: bool = False,
    upstream: bool = False,
) -> StageResult:
    """``dvc repro --single-item STAGE``: runs it only if something it depends on changed.

    ``pull``: DVC's run cache is read from the remote first, so a stage that already ran
    with the same deps, params and command elsewhere (a worker) is restored, not rerun.
    ``upstream``: the stages it depends on are reproduced too (restored, with ``pull``).
    """
    start = time.perf_counter()
    args = ["repro", *(["--pull"] if pull else []), *([] if upstream else ["--single-item"])]
    proc = run_dvc([*args, stage], root, env, timeout, on_line)
    raise_for_failure(proc, stage)
    output = proc.stdout
    return StageResult(
        stage,
        f"Running stage '{stage}'" in output,
        time.perf_counter() - start,
        output,
        restored=f"Stage '{stage}' is cached - skipping run" in output,
    )


_MISSING = re.compile(r"^(?:md5: )?([0-9a-f]{32})\s*$", re.M)


def pull(root: str | Path, env: dict | None = None, on_line: LineSink | None = None) -> str:
    """``dvc pull`` with the remote's ``verify`` on: an object that fails its hash is refused.

    DVC reports a corrupted object as missing; either way nothing unverified is checked
    out, and this raises :class:`DataIntegrityError` naming the outputs concerned.
    """
    proc = run_dvc(["pull"], root, env, 3600, on_line)
    output = proc.stdout
    if proc.returncode != 0 and (
        "Checkout failed" in output or "do not exist" in output or "missing" in output.lower()
    ):
        targets = output.split("Checkout failed for following targets:")[-1].split("Is your")[0]
        paths = [line.strip() for line in targets.splitlines() if line.strip()]
        raise DataIntegrityError(
            "dvc pull refused data from the remote: objects missing or failing their hash "
            f"check (remote verify is on): {', '.join(paths) or 'see the output'}; hashes "
            f"{', '.join(_MISSING.findall(output)) or 'unknown'}. Nothing was trained on it; "
            "push intact data to the remote (or recompute it with dvc repro) and rerun.",
            "pull",
            proc.returncode,
            output,
        )
    raise_for_failure(proc, "pull")
    return output


def push_uncached_outputs(root: str | Path, targets: list[str]) -> int:
    """Upload the ``cache: false`` outputs (metrics) of ``targets`` to the default remote.

    DVC's run cache records them by hash, and the run that made them stored them in the
    local cache, but ``dvc push --run-cache`` does not upload them; without them another
    clone cannot restore the stage from the run cache and reruns it. Returns how many
    objects were sent.
    """
    from dvc.repo import Repo

    # DVC resolves a target against the process's working directory, not the repository:
    # name each stage by its dvc.yaml's absolute path (a flow run's cwd is elsewhere).
    dvc_yaml = Path(root).resolve() / "dvc.yaml"
    with Repo(str(root)) as repo:
        objs = {
            out.hash_info
            for target in targets
            for stage in repo.stage.collect(f"{dvc_yaml}:{target}")
            for out in stage.outs
            if not out.use_cache and out.hash_info and out.hash_info.value
        }
        if not objs:
            return 0
        return len(repo.cloud.push(objs).transferred)


def push(
    root: str | Path,
    env: dict | None = None,
    on_line: LineSink | None = None,
    targets: list[str] | None = None,
    run_cache: bool = False,
) -> str:
    """``dvc push`` (of ``targets`` only, when given); ``run_cache``: DVC's record of which
    stage run made which outputs goes too, so another clone restores them instead of rerunning."""
    args = ["push", *(["--run-cache"] if run_cache else []), *(targets or [])]
    proc = run_dvc(args, root, env, 3600, on_line)
    if run_cache and targets and proc.returncode == 0:
        sent = push_uncached_outputs(root, targets)
        if on_line is not None:
            on_line(f"{sent} outputs kept out of DVC's cache (metrics) pushed for the run cache")
    raise_for_failure(proc, "push")
    return proc.stdout
