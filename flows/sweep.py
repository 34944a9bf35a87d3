"""Sweeps: many configurations as parallel, isolated DVC experiments; the best one promoted.

Each point of the space is a ``dvc exp run --temp -S ...`` in its own Prefect task
(at most ``max_parallel`` at once), or, with ``dispatch="deployment"``, its own flow
run of a training deployment on a work pool, so several workers share the work.
All MLflow runs of a sweep carry the tag ``rnnops.sweep_id`` and the parent run
(``mlflow.parentRunId``) that holds the sweep's summary table.

Promotion: inside a point, the pipeline's ``promote`` stage only records its
candidate (``RNNOPS_PROMOTE_MODE=record``); at the end the sweep sends its single
best point through :func:`rnnops.stages.promote.run_promote` — the same gate (margin,
file lock, champion re-read under the lock) that ``dvc repro`` uses, once per
sweep, on that experiment's own outputs read back from git and the DVC cache.

    python -m flows.sweep sweep.yaml --max-parallel 2      # or: rnnops sweep sweep.yaml
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.stage_tasks import links_env, stream_to_log, sweep_env
from flows.team import run_on_pool
from rnnops.core import contract
from rnnops.core.config import ConfigError, load_params
from rnnops.core.sweep_plan import SweepError, expand_space, load_space, summary_markdown
from rnnops.stages.experiment_promotion import experiment_outcome, promote_experiment
from rnnops.systems import dvc_driver, dvc_experiments, tracking, worker_clone

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def new_sweep_id() -> str:
    return f"sweep-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


@task(name="sweep-point", task_run_name="point-{index}", persist_result=False)
def sweep_point(
    root: str, index: int, overrides: dict[str, Any], name: str, env: dict[str, str], metric: str
) -> dict[str, Any]:
    """One point as an isolated DVC experiment in this process."""
    logger = get_run_logger()
    try:
        result = dvc_experiments.run_experiment(
            root, overrides, env, name=name, on_line=stream_to_log()
        )
    except dvc_driver.StageError as exc:
        logger.error("point %d %s failed: %s", index, overrides, exc)
        raise
    logger.info("point %d (%s) ran %s in %.1fs", index, name, result.stages_run, result.seconds)
    return {"seconds": round(result.seconds, 2), **experiment_outcome(root, name, metric)}


@task(name="sweep-point-dispatch", task_run_name="point-{index}", persist_result=False)
def dispatch_point(
    root: str,
    index: int,
    overrides: dict[str, Any],
    name: str,
    sweep: dict[str, Any],
    metric: str,
    deployment_name: str,
) -> dict[str, Any]:
    """One point as a flow run of ``deployment_name`` (a training deployment) on its work pool."""
    flow_run = run_on_pool(
        deployment_name,
        {"project_dir": root, "overrides": overrides, "sweep": sweep},
        f"point {index}",
    )
    if not flow_run.state.is_completed():
        raise SweepError(
            f"point {index} ({name}): flow run {flow_run.id} ended "
            f"{flow_run.state.type.value}: {flow_run.state.message}"
        )
    if sweep.get("git_remote"):  # it ran in a worker's own clone: bring it here
        worker_clone.pull_experiment(root, sweep["git_remote"], name)
    return {"flow_run_id": str(flow_run.id), **experiment_outcome(root, name, metric)}


@dataclass(frozen=True)
class SweepContext:
    """What every point of one sweep shares."""

    root: Path
    sweep_id: str
    parent: str
    metric: str
    uri: str
    dispatch: str
    deployment_name: str | None
    shared: dict[str, str]  # a worker's clone: git remote, ref and commit


def check_arguments(dispatch, deployment_name, max_parallel, git_remote) -> None:
    if dispatch not in ("local", "deployment"):
        raise SweepError(f"dispatch must be 'local' or 'deployment', not {dispatch!r}")
    if dispatch == "deployment" and not deployment_name:
        raise SweepError("dispatch='deployment' needs deployment_name (e.g. training/sweep-point)")
    if max_parallel < 1:
        raise SweepError("max_parallel must be at least 1")
    if git_remote and dispatch != "deployment":
        raise SweepError("git_remote is for dispatch='deployment' (workers with their own clones)")


def validated_points(root: Path, params_path: str, space, point_names) -> list[dict[str, Any]]:
    """The space's points, each checked as params before anything runs."""
    points = expand_space(space)
    if point_names is not None and len(point_names) != len(points):
        raise SweepError(f"{len(point_names)} point names for {len(points)} points")
    for i, overrides in enumerate(points):
        try:
            load_params(root / params_path, overrides)
        except ConfigError as exc:
            raise SweepError(f"point {i} {overrides}: {exc}") from None
    return points


def submit_point(runner, ctx: SweepContext, index: int, overrides: dict, name: str):
    sweep = {
        "sweep_id": ctx.sweep_id,
        "parent_run_id": ctx.parent,
        "point": index,
        "name": name,
        **ctx.shared,
    }
    common = {"root": str(ctx.root), "index": index, "overrides": overrides, "name": name}
    if ctx.dispatch == "deployment":
        return runner.submit(
            dispatch_point,
            {
                **common,
                "sweep": sweep,
                "metric": ctx.metric,
                "deployment_name": ctx.deployment_name,
            },
        )
    env = dvc_driver.subprocess_env(
        {**links_env(), **sweep_env(sweep), "MLFLOW_TRACKING_URI": ctx.uri}
    )
    return runner.submit(sweep_point, {**common, "env": env, "metric": ctx.metric})


def run_points(ctx, points, point_names, max_parallel, reuse_finished) -> list[dict]:
    """Every point run (or read back), at most ``max_parallel`` at once; a row each."""
    logger = get_run_logger()
    futures = []
    with ThreadPoolTaskRunner(max_workers=max_parallel) as runner:
        for i, overrides in enumerate(points):
            name = point_names[i] if point_names else f"{ctx.sweep_id}-p{i}"
            if reuse_finished and dvc_experiments.finished_experiment(ctx.root, name):
                logger.info("point %d (%s) finished on this commit: read back, not rerun", i, name)
                futures.append((i, overrides, name, None))
            else:
                futures.append((i, overrides, name, submit_point(runner, ctx, i, overrides, name)))
        rows = []
        for i, overrides, name, future in futures:
            row = {"point": i, "overrides": overrides, "experiment": name}
            if future is None:
                outcome = experiment_outcome(ctx.root, name, ctx.metric)
                row.update(status="completed", reused=True, **outcome)
                rows.append(row)
                continue
            future.wait()
            if future.state.is_completed():
                row.update(status="completed", **future.result())
            else:
                exc = future.result(raise_on_failure=False)
                row.update(status="failed", error=str(exc).strip().splitlines()[0][:300])
                row["error_detail"] = str(exc)[-1500:]
            rows.append(row)
    return rows


def finish(ctx: SweepContext, rows, best, promotion, owns_parent: bool) -> str:
    """The failures logged, the summary to the parent run (ended if the sweep owns it) and
    a Prefect artifact."""
    completed = [r for r in rows if r["status"] == "completed"]
    for r in rows:
        if r["status"] != "completed":
            get_run_logger().error("point %d %s failed: %s", r["point"], r["overrides"], r["error"])
    markdown = summary_markdown(ctx.sweep_id, rows, best, promotion)
    table = {
        "point": [r["point"] for r in rows],
        "experiment": [r["experiment"] for r in rows],
        "overrides": [json.dumps(r["overrides"]) for r in rows],
        "status": [r["status"] for r in rows],
        "candidate": [r.get("candidate") for r in rows],
        ctx.metric: [r.get("score") for r in rows],
        "error": [r.get("error") for r in rows],
    }
    tracking.finish_parent_run(
        ctx.parent,
        table,
        markdown,
        {
            f"best_{ctx.metric}": best["score"] if best else None,
            "failed_points": len(rows) - len(completed),
        },
        # A caller's parent run stays open for what the caller logs next.
        status=("FINISHED" if completed else "FAILED") if owns_parent else None,
    )
    create_markdown_artifact(
        key="sweep-report",
        markdown=markdown,
        description=f"Sweep {ctx.sweep_id}: points and promotion",
    )
    return markdown


@flow(name="sweep", log_prints=True, persist_result=False)
def sweep_flow(
    space: dict[str, list] | list[dict[str, Any]],
    max_parallel: int = 2,
    promote: bool = True,
    project_dir: str | None = None,
    apply_best: bool = False,
    params_path: str = "params.yaml",
    dispatch: str = "local",
    deployment_name: str | None = None,
    sweep_id: str | None = None,
    point_names: list[str] | None = None,
    reuse_finished: bool = False,
    parent_run_id: str | None = None,
    git_remote: str | None = None,
) -> dict[str, Any]:
    """Run every point of ``space`` as a DVC experiment, at most ``max_parallel`` at once.

    ``point_names`` names the experiments (default ``<sweep_id>-p<i>``); with
    ``reuse_finished`` a point whose experiment already ran on this commit is read back,
    not retrained. ``parent_run_id``: an MLflow run the caller owns (a study's), which
    the sweep logs its table to and leaves running. ``git_remote`` (with
    ``dispatch="deployment"``): workers with their own clones fetch this commit from that
    remote and push their experiments back to it (:mod:`rnnops.systems.worker_clone`).
    """
    logger = get_run_logger()
    check_arguments(dispatch, deployment_name, max_parallel, git_remote)
    root = Path(project_dir or os.getcwd()).resolve()
    points = validated_points(root, params_path, space, point_names)
    params = load_params(root / params_path)
    sweep_id = sweep_id or new_sweep_id()
    uri = tracking.resolve_tracking_uri(params.tracking.uri, root)
    tracking.ensure_store(uri)
    tracking.configure(uri, params.tracking.experiment)
    parent = parent_run_id or _start_parent_run(params, root, sweep_id, space, points, max_parallel)
    logger.info("sweep %s: %d points, at most %d at once", sweep_id, len(points), max_parallel)
    shared = _publish_for_workers(root, git_remote, sweep_id) if git_remote else {}
    ctx = SweepContext(
        root, sweep_id, parent, params.promotion.metric, uri, dispatch, deployment_name, shared
    )
    rows = run_points(ctx, points, point_names, max_parallel, reuse_finished)
    completed = (r for r in rows if r["status"] == "completed")
    best = max(completed, key=lambda r: r["score"], default=None)
    promotion = _promote_best(root, best, root / params_path, parent) if best and promote else None
    if best and apply_best:
        dvc_experiments.apply_experiment(root, best["experiment"])
        logger.info("applied %s to the workspace", best["experiment"])
    finish(ctx, rows, best, promotion, owns_parent=parent_run_id is None)
    if best is None:
        raise SweepError(f"sweep {sweep_id}: every point failed")
    return {
        "sweep_id": sweep_id,
        "parent_run_id": parent,
        "points": rows,
        "failed": [r["point"] for r in rows if r["status"] != "completed"],
        "best": best,
        "promotion": promotion,
        "applied": bool(best and apply_best),
    }


def _start_parent_run(params, root: Path, sweep_id: str, space, points, max_parallel: int) -> str:
    """The sweep's MLflow parent run: its lineage, its space and how many points run at once."""
    return tracking.start_parent_run(
        params.tracking.experiment,
        sweep_id,
        {
            **tracking.lineage_tags(None, root),
            contract.SWEEP_ID_TAG: sweep_id,
            "rnnops.sweep_role": "parent",
            **{k: v for k, v in links_env().items() if k == contract.PREFECT_FLOW_RUN_ID_ENV},
        },
        {"space": json.dumps(space), "points": len(points), "max_parallel": max_parallel},
    )


def _publish_for_workers(root: Path, git_remote: str, sweep_id: str) -> dict[str, str]:
    """The sweep's commit on the git remote, under its own ref, for the workers' clones."""
    ref = worker_clone.sweep_ref(sweep_id)
    commit = worker_clone.publish_commit(root, git_remote, ref)
    get_run_logger().info("workers fetch %s from %s (%s)", commit[:10], git_remote, ref)
    return {"git_remote": git_remote, "ref": ref, "commit": commit}


def _promote_best(root: Path, best: dict[str, Any], params_path: Path, parent: str) -> dict:
    """The best point through the promotion gate; its decision logged to the parent run."""
    with tempfile.TemporaryDirectory(prefix="rnnops-sweep-") as tmp:
        promotion = promote_experiment(root, best["experiment"], params_path, Path(tmp))
        tracking.log_files_to_runs([parent], [Path(tmp) / "promotion.json"])
    get_run_logger().info(
        "best point %d -> v%s %s",
        best["point"],
        promotion["candidate_version"],
        promotion["decision"],
    )
    return promotion


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m flows.sweep",
        description="Run a sweep: every point of a YAML space as an isolated DVC experiment.",
    )
    parser.add_argument("space", help="YAML file: a grid {key: [values]} or a list of overrides")
    parser.add_argument("--max-parallel", type=int, default=None)
    parser.add_argument("--no-promote", action="store_true")
    parser.add_argument("--apply-best", action="store_true")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project-dir", default=None)
    parser.add_argument("--deployment", help="dispatch points to this deployment's work pool")
    parser.add_argument(
        "--git-remote",
        help="with --deployment: workers clone this git remote (URL or path) and push back",
    )
    args = parser.parse_args(argv)
    space, options = load_space(args.space)
    state = sweep_flow(
        space,
        max_parallel=args.max_parallel or options.get("max_parallel", 2),
        promote=not args.no_promote and options.get("promote", True),
        project_dir=args.project_dir,
        apply_best=args.apply_best or options.get("apply_best", False),
        params_path=args.params,
        dispatch="deployment" if args.deployment else "local",
        deployment_name=args.deployment,
        git_remote=args.git_remote,
        return_state=True,
    )
    if not state.is_completed():
        print(f"sweep flow {state.type.value}: {state.message}")
        return 1
    result = state.result()
    print(
        summary_markdown(result["sweep_id"], result["points"], result["best"], result["promotion"])
    )
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
