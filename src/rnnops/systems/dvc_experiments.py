"""DVC experiments from Python: run one isolated, find it again, read what it committed.

Sweeps and studies run their points as ``dvc exp run --temp`` experiments; a finished
one lives only in its git ref (``refs/exps/...``) and the DVC cache.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from rnnops.systems.dvc_driver import LineSink, StageError, raise_for_failure, run_dvc


@dataclass(frozen=True)
class ExperimentResult:
    name: str | None
    seconds: float
    output: str
    stages_run: list[str]


def run_experiment(
    root: str | Path,
    overrides: dict,
    env: dict | None = None,
    name: str | None = None,
    timeout: float | None = None,
    on_line: LineSink | None = None,
) -> ExperimentResult:
    """``dvc exp run --temp -S k=v``: isolated from the workspace and from other experiments."""
    cmd = ["exp", "run", "--temp"]
    if name:
        cmd += ["--name", name]
    for key, value in overrides.items():
        if key.startswith("~"):  # a deletion names only its key
            cmd += ["-S", key]
            continue
        cmd += ["-S", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    start = time.perf_counter()
    proc = run_dvc(cmd, root, env, timeout, on_line)
    raise_for_failure(proc, "experiment")
    output = proc.stdout
    found = re.findall(r"Ran experiment\(s\): (\S+)", output) or re.findall(
        r"experiment '([^']+)'", output
    )
    return ExperimentResult(
        found[-1] if found else name,
        time.perf_counter() - start,
        output,
        re.findall(r"Running stage '([^']+)'", output),
    )


def experiment_rev(root: str | Path, name: str) -> str:
    """The git commit of DVC experiment ``name`` (its ref under ``refs/exps``).

    One run on the current ``HEAD`` wins over a namesake from another baseline.
    """
    current = finished_experiment(root, name)
    if current:
        return current
    refs = ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"]
    proc = subprocess.run(refs, cwd=root, capture_output=True, text=True, timeout=60)
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition(" ")
        if ref.rsplit("/", 1)[-1] == name:
            return sha
    raise StageError(f"no DVC experiment named {name!r} in {root}", "experiment", None, proc.stderr)


def finished_experiment(root: str | Path, name: str) -> str | None:
    """The commit of experiment ``name`` if it was run on the current ``HEAD``, else None.

    DVC keeps an experiment under ``refs/exps/<baseline sha split 2/38>/<name>``; one made
    on another commit ran other code or params, so it does not count as finished here.
    """
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    if not head:
        return None
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", ref],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.stdout.strip() or None


def experiment_files(root: str | Path, name: str):
    """A read-only filesystem of experiment ``name`` as it committed it (git and DVC outputs).

    Outputs that git ignores and DVC does not cache (``cache: false`` under an ignored
    directory) are not part of an experiment's commit.
    """
    from dvc.api import DVCFileSystem

    return DVCFileSystem(str(root), rev=experiment_rev(root, name))


def fetch_experiment_outputs(
    root: str | Path, name: str, paths: list[str], dest: str | Path
) -> Path:
    """Copy ``paths`` of experiment ``name`` from git and the DVC cache into ``dest``.

    The workspace is not touched: a finished ``--temp`` experiment lives only in
    its git ref and the cache.
    """
    dest = Path(dest)
    fs = experiment_files(root, name)
    for path in paths:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if fs.isdir(path):
            fs.get(path, str(target), recursive=True)
        else:
            fs.get_file(path, str(target))
    return dest


def apply_experiment(root: str | Path, name: str, env: dict | None = None) -> str:
    """``dvc exp apply NAME``: bring an experiment's params, code and outputs into the workspace."""
    proc = run_dvc(["exp", "apply", name], root, env, 600)
    raise_for_failure(proc, "exp apply")
    return proc.stdout
