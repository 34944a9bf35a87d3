"""Wall time of a 4-point sweep: locally, on the stack's workers one at a time, and two at once.

All in one run, on the tests' tiny generated corpus (the LSTM alone), so that what the
team stack adds per point shows: the local sweep (`dispatch="local"`, MLflow on SQLite,
`max_parallel` 2) beside the same space dispatched to the stack's workers, each in its own
clone (`--git-remote`), with `max_parallel` 1 (one worker busy at a time) and 2 (both).
Different seeds per sweep, so no point can be skipped by a cache. On two cores the two
workers share the CPUs with each other and with the servers: the parallel figure says what
this machine gives, not what two machines would.

Per-point overhead is (wall time x max_parallel / points) minus the mean time the point's
own `dvc exp run` took, as the local sweep measures it.

    python bench/stack.py            # needs PostgreSQL (apt-get install postgresql)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rnnops.testing.corpus import write_tiny_reuters  # noqa: E402
from rnnops.testing.projects import BIN_DIR, make_project, run, tiny_params  # noqa: E402

STACK = [sys.executable, str(ROOT / "scripts" / "stack.py")]
POINTS = 4


def stack(command: str, state: Path, env: dict) -> dict[str, str]:
    import shlex

    proc = subprocess.run(
        [*STACK, command, "--state-dir", str(state)], env=env, capture_output=True, text=True
    )
    values = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition("=")
        values[name] = shlex.split(value)[0] if value else ""
    return values


def sweep(project: Path, env: dict, space: str, extra: list[str]) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "flows.sweep", space, "--no-promote", *extra]
    start = time.perf_counter()
    out = run(cmd, project, env, timeout=3600).stdout
    return time.perf_counter() - start, out


def main() -> int:
    out = ROOT / "bench" / "results" / "stack.json"
    with tempfile.TemporaryDirectory(prefix="rnnops-bench-stack-") as tmp:
        tmp = Path(tmp)
        Path(tmp).chmod(0o755)  # PostgreSQL may run as another user (root: `postgres`)
        nltk = write_tiny_reuters(tmp / "nltk")
        state = tmp / "stack"
        base = {
            **os.environ,
            "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
            "NLTK_DATA": str(nltk),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "STACK_WORKERS": "2",
        }
        values = stack("up", state, base)
        if values.get("STACK") != "up":
            print("the stack did not start", values, file=sys.stderr)
            return 1
        try:
            params = tiny_params()
            params["models"] = {"lstm": params["models"]["lstm"]}
            project, env = make_project(tmp / "project", nltk, params, with_flows=True)
            keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
            env.update({k: values[k] for k in keys})
            dvc, remote = str(BIN_DIR / "dvc"), values["GIT_REMOTE_URL"]
            run([dvc, "remote", "add", "-d", "team", values["DVC_REMOTE_URL"]], project, env)
            run(
                [dvc, "remote", "modify", "team", "endpointurl", values["S3_ENDPOINT_URL"]],
                project,
                env,
            )
            seeds = iter(range(1, 100))
            spaces = {}
            for label in ("local", "one worker at a time", "two workers"):
                space = {"space": {"models.lstm.seed": [next(seeds) for _ in range(POINTS)]}}
                path = project / f"space-{len(spaces)}.yaml"
                path.write_text(json.dumps(space))
                spaces[label] = path.name
            run(["git", "add", "-A"], project, env)
            run(["git", "commit", "-qm", "bench"], project, env)
            run(["git", "push", "-q", remote, "HEAD:refs/heads/main"], project, env)
            stack_env = {
                **env,
                "MLFLOW_TRACKING_URI": values["MLFLOW_TRACKING_URI"],
                "PREFECT_API_URL": values["PREFECT_API_URL"],
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            }
            deploy = (
                f"from flows.deployments import deploy_sweep_point; deploy_sweep_point({remote!r})"
            )
            run([sys.executable, "-c", deploy], project, stack_env)
            local_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
            dispatch = ["--deployment", "training/sweep-point", "--git-remote", remote]
            results = {}
            for label, parallel, extra, run_env in (
                ("local", 2, [], local_env),
                ("one worker at a time", 1, dispatch, stack_env),
                ("two workers", 2, dispatch, stack_env),
            ):
                wall, text = sweep(
                    project, run_env, spaces[label], ["--max-parallel", str(parallel), *extra]
                )
                seconds = [
                    float(cell)
                    for line in text.splitlines()
                    if line.startswith("| ") and "completed" in line
                    for cell in [line.rstrip(" |").rsplit("|", 1)[-1].strip()]
                    if cell.replace(".", "", 1).isdigit()
                ]
                results[label] = {
                    "max_parallel": parallel,
                    "wall_seconds": round(wall, 1),
                    "completed": text.count("| completed |"),
                    "point_seconds": seconds,
                }
                print(f"{label}: {POINTS} points in {wall:.1f}s", flush=True)
        finally:
            stack("down", state, base)
    local = results["local"]
    point_run = sum(local["point_seconds"]) / max(len(local["point_seconds"]), 1)
    for entry in results.values():
        per_point = entry["wall_seconds"] * entry["max_parallel"] / POINTS
        entry["seconds_per_point_slot"] = round(per_point, 1)
        entry["overhead_per_point_seconds"] = round(per_point - point_run, 1)
    report = {
        "benchmark": "a 4-point sweep locally and on the stack's workers (own clones)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "local_point_exp_run_seconds": round(point_run, 1),
        "results": results,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
