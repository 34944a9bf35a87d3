"""Prefect flow over the DVC pipeline: each DVC stage is a Prefect task.

Without overrides the flow reproduces the workspace exactly like ``dvc repro``
(unchanged stages skipped, ``dvc.lock`` updated). With overrides it runs an
isolated DVC experiment (``dvc exp run --temp -S ...``), so several flows with
different overrides can run at once without touching the workspace. With a git remote
and a stage deployment, each model's stages run on the team's workers (:mod:`flows.team`).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import State

from flows import team
from flows.stage_tasks import (
    dvc_experiment,
    dvc_pull,
    dvc_push,
    dvc_stage,
    experiment_push,
    links_env,
    reap_dead_runs,
    retry_policy,
    sweep_env,
    worker_checkout,
)
from flows.training_report import report_markdown
from rnnops.core import contract
from rnnops.core.config import Params, load_params
from rnnops.core.io import read_json
from rnnops.systems import dvc_driver, tracking

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def lateness_seconds(scheduled: datetime | None, now: datetime | None = None) -> float:
    """How late a run starts relative to its scheduled time (0 when unscheduled or early)."""
    if scheduled is None:
        return 0.0
    now = now or datetime.now(timezone.utc)
    return max(0.0, (now - scheduled).total_seconds())


def too_late(lateness: float, max_lateness_minutes: float | None) -> bool:
    """The Late-run policy: a run later than ``max_lateness_minutes`` is skipped."""
    return max_lateness_minutes is not None and lateness > max_lateness_minutes * 60


def training_run_name() -> str:
    """A flow run's name says what it does: the experiment's overrides, else the commit."""
    parameters = runtime_flow_run.parameters or {}
    sweep = parameters.get("sweep") or {}
    overrides = parameters.get("overrides") or {}
    if sweep.get("name"):
        return f"sweep point {sweep.get('point')}: {sweep['name']}"
    if overrides:
        shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
        return f"experiment: {shown[:120]}"
    root = Path(parameters.get("project_dir") or os.getcwd())
    commit = tracking.git_commit(root)
    return f"workspace @ {commit[:8] if commit else 'no commit'}"


def reproduce_workspace(
    root: Path,
    env: dict[str, str],
    stage_env: dict[str, str],
    policy: dict[str, Any],
    clone: dict[str, str] | None,
    stage_deployment: str | None,
) -> dict[str, bool]:
    """Every stage in DVC's order; with ``clone``, each model's stages on the work pool."""
    order = dvc_driver.stage_order(root)
    stage_task = dvc_stage.with_options(**policy)
    on_pool: list[str] | None = None if clone else []
    ran = {}
    for stage in order:
        if on_pool is None and stage.partition("@")[0] in dvc_driver.MODEL_STAGES:
            on_pool = team.run_model_stages_on_pool(
                root, order, env, stage_env, clone, stage_deployment, policy
            )
        # A stage that ran on a worker is restored here from the run cache, not rerun.
        result = stage_task(str(root), stage, env, pull=stage in (on_pool or []))
        if isinstance(result, State):  # a skipped stage's state carries its summary
            result = result.result()
        if stage in (on_pool or []) and not result.get("restored"):
            get_run_logger().warning(
                "%s ran on the pool but its run was not in the DVC remote's run cache: "
                "it ran here instead",
                stage,
            )
        ran[stage] = result["ran"]
    return ran


@flow(
    name="training",
    flow_run_name=training_run_name,
    log_prints=True,
    persist_result=False,
    description="The DVC pipeline (dvc.yaml) as Prefect tasks: every changed stage runs, "
    "tracked in MLflow; the best model by validation becomes the champion.",
)
def training_flow(
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    push: bool = False,
    project_dir: str | None = None,
    retries: int = 2,
    retry_delay_seconds: float = 10.0,
    sweep: dict[str, Any] | None = None,
    pull: bool = False,
    max_lateness_minutes: float | None = None,
    git_remote: str | None = None,
    stage_deployment: str | None = None,
) -> dict[str, Any]:
    """Run the DVC pipeline as Prefect tasks; with ``overrides``, as an isolated DVC experiment.

    ``pull``: ``dvc pull`` first (workspace runs); data that fails its hash check stops the
    flow before any stage runs.

    ``max_lateness_minutes`` (the Late-run policy of scheduled deployments): a run that
    starts later than this after its scheduled time, e.g. one left Late while no process
    served the deployment, does nothing and says so; the next scheduled run does the work.

    ``git_remote`` and ``stage_deployment`` (workspace runs on a team stack): each model's
    ``train``/``evaluate`` stages run as a flow run of ``stage_deployment`` (the
    ``pipeline-stages`` flow) on whichever worker takes it, in its own clone of the commit
    pushed to ``git_remote``; the rest runs here, and promotes once.

    ``sweep`` (set by ``flows.sweep`` when it dispatches a point to a deployment):
    ``sweep_id``, ``parent_run_id``, ``point`` and ``name`` (the DVC experiment's
    name); the point's promotion is deferred to the sweep.
    """
    skipped = _late_start(max_lateness_minutes)
    if skipped:
        get_run_logger().warning(skipped)
        return {"skipped": skipped}
    root = Path(project_dir or os.getcwd()).resolve()
    remote = (sweep or {}).get("git_remote")
    if remote:  # a worker with its own clone: the sweep's commit from the git remote
        root = worker_checkout(remote, sweep["ref"], sweep["commit"])
    # Invalid params are a deterministic failure: stop before any stage runs.
    params = load_params(root / params_path, overrides)
    uri = tracking.resolve_tracking_uri(params.tracking.uri, root)
    experiment = bool(overrides or sweep)
    team.check_team_run(uri, git_remote, stage_deployment, experiment)
    # What the stages log to and under which ids: all a worker is sent of this environment.
    stage_env = {**links_env(), **(sweep_env(sweep) if sweep else {}), "MLFLOW_TRACKING_URI": uri}
    env = dvc_driver.subprocess_env(team.clone_env(root, stage_env) if remote else stage_env)
    policy = retry_policy(retries, retry_delay_seconds)

    summary = {"project": str(root), "mode": "experiment" if experiment else "workspace"}
    summary.update(
        _run_experiment(root, overrides, sweep, uri, env, policy)
        if experiment
        else _run_workspace(root, uri, env, stage_env, policy, pull, git_remote, stage_deployment)
    )
    if push:
        dvc_push.with_options(**policy)(str(root), env)
        summary["pushed"] = True
    _publish_report(summary, params, uri, env)
    return summary


def _late_start(max_lateness_minutes: float | None) -> str | None:
    """Why this run does nothing, when it started later than the Late-run policy allows."""
    late = lateness_seconds(runtime_flow_run.scheduled_start_time)
    if not too_late(late, max_lateness_minutes):
        return None
    return (
        f"skipped: started {late / 60:.1f} min after its scheduled time, over the "
        f"max_lateness_minutes={max_lateness_minutes} policy; the next scheduled run retrains"
    )


def _run_experiment(
    root: Path,
    overrides: dict[str, Any] | None,
    sweep: dict[str, Any] | None,
    uri: str,
    env: dict[str, str],
    policy: dict[str, Any],
) -> dict[str, Any]:
    """The pipeline as one DVC experiment (``dvc exp run``), pushed back from a worker's clone."""
    remote = (sweep or {}).get("git_remote")
    tracking.ensure_store(uri)  # create the store once, before any parallel work
    reap_dead_runs(uri)
    if remote and (root / "dvc.lock").exists():
        # The commit's outputs from the bucket (a corrupted object stops the point here);
        # a commit that was never reproduced has none to pull, its point computes them.
        dvc_pull.with_options(**policy)(str(root), env)
    summary = dvc_experiment.with_options(**policy)(
        str(root), dict(overrides or {}), env, (sweep or {}).get("name")
    )
    if remote:
        experiment_push.with_options(**policy)(str(root), remote, sweep["name"], env)
        summary["pushed_to"] = remote
    return summary


def _run_workspace(
    root: Path,
    uri: str,
    env: dict[str, str],
    stage_env: dict[str, str],
    policy: dict[str, Any],
    pull: bool,
    git_remote: str | None,
    stage_deployment: str | None,
) -> dict[str, Any]:
    """The workspace's changed stages, under its lock; the promotion and report they wrote."""
    logger = get_run_logger()
    summary: dict[str, Any] = {}
    with dvc_driver.workspace_lock(root):
        for message in dvc_driver.recover_dvc_locks(root):
            logger.warning(message)
        # Published before anything runs: the workers must run the code this run started on.
        clone = (
            team.publish_run_commit(root, git_remote, str(runtime_flow_run.id or "local"))
            if git_remote
            else None
        )
        if pull:
            dvc_pull.with_options(**policy)(str(root), env)
        changed = dvc_driver.changed_stages(root, env)
        if not changed:
            logger.info(
                "nothing changed (data, code and params): the pipeline is up to date, no stage runs"
            )
            return {"noop": True, "stages": {}}
        logger.info("changed: %s", ", ".join(changed))
        tracking.ensure_store(uri)  # create the store once, before any parallel work
        reap_dead_runs(uri)
        summary["stages"] = reproduce_workspace(
            root, env, stage_env, policy, clone, stage_deployment
        )
    promotion = root / "reports" / "promotion.json"
    if promotion.exists() and summary["stages"].get("promote"):
        summary["promotion"] = read_json(promotion)
    comparison = root / "reports" / "comparison.html"
    if comparison.exists():
        summary["comparison"] = str(comparison)
    return summary


def _publish_report(summary: dict[str, Any], params: Params, uri: str, env: dict[str, str]) -> None:
    """The flow run's Markdown artifact: the models it trained, their MLflow runs, the promotion."""
    if summary.get("noop"):
        # Nothing ran, so there is nothing new in MLflow to link: finish quickly.
        create_markdown_artifact(
            key="training-report",
            markdown=report_markdown(summary, [], []),
            description="Nothing changed: no stage ran",
        )
        return
    tracking.configure(uri, params.tracking.experiment)
    summary["mlflow_experiment"] = params.tracking.experiment
    runs = tracking.runs_tagged(
        contract.PREFECT_FLOW_RUN_ID_TAG,
        env.get(contract.PREFECT_FLOW_RUN_ID_ENV, "-"),
        params.tracking.experiment,
    )
    versions = tracking.versions_of_runs(
        params.promotion.registered_model, [r["run_id"] for r in runs]
    )
    summary["mlflow_runs"] = [r["run_id"] for r in runs]
    create_markdown_artifact(
        key="training-report",
        markdown=report_markdown(summary, runs, versions),
        description="Models of this flow run, their MLflow runs and the promotion",
    )


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    import yaml

    parser = argparse.ArgumentParser(
        prog="python -m flows.training",
        description="Run the training flow: the DVC pipeline as Prefect tasks (an isolated "
        "DVC experiment when --set is given).",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override, e.g. --set models.lstm.units=128 (repeatable)",
    )
    parser.add_argument("--push", action="store_true", help="dvc push after success")
    parser.add_argument("--project-dir", default=None, help="project root (default: cwd)")
    parser.add_argument(
        "--git-remote",
        default=None,
        help="the team's git remote: each model's stages run on the workers, in clones of "
        "this commit pushed there (with --stage-deployment)",
    )
    parser.add_argument(
        "--stage-deployment",
        default=None,
        metavar="NAME",
        help="the pipeline-stages deployment the workers serve, e.g. pipeline-stages/team",
    )
    args = parser.parse_args(argv)
    if bool(args.git_remote) != bool(args.stage_deployment):
        parser.error("--git-remote and --stage-deployment go together (workers need both)")
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)} or None
    state = training_flow(
        overrides=overrides,
        push=args.push,
        project_dir=args.project_dir,
        git_remote=args.git_remote,
        stage_deployment=args.stage_deployment,
        return_state=True,
    )
    if not state.is_completed():
        print(f"training flow {state.type.value}: {state.message}")
        return 1
    print(json.dumps(state.result(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
