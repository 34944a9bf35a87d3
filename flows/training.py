"""Prefect flow over the DVC pipeline: each DVC stage is a Prefect task.

Without overrides the flow reproduces the workspace exactly like ``dvc repro``
(unchanged stages skipped, ``dvc.lock`` updated). With overrides it runs an
isolated DVC experiment (``dvc exp run --temp -S ...``), so several flows with
different overrides can run at once without touching the workspace.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.runtime import task_run as runtime_task_run
from prefect.states import Completed, State
from prefect.tasks import exponential_backoff

from flows.training_report import report_markdown
from rnnops.core import contract, stage_output
from rnnops.core.config import load_params
from rnnops.core.io import read_json
from rnnops.systems import dvc_driver, dvc_experiments, tracking, worker_clone

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def retry_transient_only(task, task_run, state) -> bool:
    """Retry a failed stage only when retrying can help (not for bad input or a busy repository)."""
    try:
        state.result(raise_on_failure=True)
    except dvc_driver.StageError as exc:
        return exc.transient
    except Exception:
        return True
    return False


def stream_to_log():
    """A line sink for :func:`pipeline.run_dvc`: each line to the Prefect log at its level.

    Known tool noise is dropped (:mod:`rnnops.core.stage_output`); the run logger is taken here,
    in the task's context, and called from the same thread as lines arrive.
    """
    logger = get_run_logger()

    def sink(line: str) -> None:
        shown = stage_output.classify(line)
        if shown is not None:
            logger.log(*shown)

    return sink


def lateness_seconds(scheduled: datetime | None, now: datetime | None = None) -> float:
    """How late a run starts relative to its scheduled time (0 when unscheduled or early)."""
    if scheduled is None:
        return 0.0
    now = now or datetime.now(timezone.utc)
    return max(0.0, (now - scheduled).total_seconds())


def too_late(lateness: float, max_lateness_minutes: float | None) -> bool:
    """The Late-run policy: a run later than ``max_lateness_minutes`` is skipped."""
    return max_lateness_minutes is not None and lateness > max_lateness_minutes * 60


def _reap_dead_runs(uri: str) -> None:
    """Runs left RUNNING by a killed process (SIGKILL) are marked KILLED before new work."""
    for item in tracking.doctor(uri):
        get_run_logger().warning(
            "MLflow run %s (%s) marked KILLED: %s", item["run_id"], item["name"], item["reason"]
        )


def _execution_env(env: dict[str, str]) -> dict[str, str]:
    """The task run's id: the same on every retry, so a retried stage reuses its MLflow run."""
    if runtime_task_run.id:
        return {**env, tracking.EXECUTION_ENV: str(runtime_task_run.id)}
    return env


@task(name="dvc-stage", task_run_name="{stage}", persist_result=False)
def dvc_stage(root: str, stage: str, env: dict[str, str]) -> dict[str, Any] | State:
    logger = get_run_logger()
    try:
        result = dvc_driver.run_stage(root, stage, _execution_env(env), on_line=stream_to_log())
    except dvc_driver.StageError as exc:
        logger.error(str(exc))
        raise
    summary = {"stage": stage, "ran": result.ran, "seconds": round(result.seconds, 2)}
    if not result.ran:
        # Shown as Skipped, not as a green half-second of work.
        message = f"{stage}: unchanged (data, code and params), skipped"
        logger.info(message)
        return Completed(name="Skipped", message=message, data=summary)
    logger.info("%s: ran in %.1fs", stage, result.seconds)
    return summary


@task(name="dvc-experiment", task_run_name="dvc exp run {name}", persist_result=False)
def dvc_experiment(
    root: str, overrides: dict[str, Any], env: dict[str, str], name: str | None = None
) -> dict[str, Any]:
    logger = get_run_logger()
    try:
        result = dvc_experiments.run_experiment(
            root, overrides, _execution_env(env), name=name, on_line=stream_to_log()
        )
    except dvc_driver.StageError as exc:
        logger.error(str(exc))
        raise
    logger.info(
        "experiment %s ran stages %s in %.1fs", result.name, result.stages_run, result.seconds
    )
    return {
        "experiment": result.name,
        "stages": dict.fromkeys(result.stages_run, True),
        "seconds": round(result.seconds, 2),
    }


@task(name="dvc-pull", task_run_name="dvc pull", persist_result=False)
def dvc_pull(root: str, env: dict[str, str]) -> None:
    logger = get_run_logger()
    try:
        dvc_driver.pull(root, env, on_line=stream_to_log())
    except dvc_driver.StageError as exc:
        logger.error(str(exc))
        raise


@task(name="worker-checkout", task_run_name="clone at {commit:.10}", persist_result=False)
def worker_checkout(git_remote: str, ref: str, commit: str) -> Path:
    """This worker's own clone of the project, at the sweep's commit."""
    root = worker_clone.prepare_clone(worker_clone.worker_home(), git_remote, ref, commit)
    get_run_logger().info("clone %s at %s", root, commit[:10])
    return root


@task(name="dvc-exp-push", task_run_name="dvc exp push {name}", persist_result=False)
def experiment_push(root: str, git_remote: str, name: str, env: dict[str, str]) -> None:
    """The point's experiment back to the git remote, its outputs to the DVC remote."""
    worker_clone.push_experiment(root, git_remote, name, env)


@task(name="dvc-push", task_run_name="dvc push", persist_result=False)
def dvc_push(root: str, env: dict[str, str]) -> None:
    dvc_driver.push(root, env, on_line=stream_to_log())


def _links_env() -> dict[str, str]:
    env = {}
    if runtime_flow_run.id:
        env[contract.PREFECT_FLOW_RUN_ID_ENV] = str(runtime_flow_run.id)
        # Prefect builds the URL from PREFECT_UI_URL; without a UI it reads "None/flow-runs/…".
        url = str(runtime_flow_run.ui_url or "")
        if url.startswith(("http://", "https://")):
            env[contract.PREFECT_FLOW_RUN_URL_ENV] = url
    if runtime_deployment.name:
        env[contract.PREFECT_DEPLOYMENT_ENV] = str(runtime_deployment.name)
    return env


def sweep_env(sweep: dict[str, Any]) -> dict[str, str]:
    """Environment of one sweep point: its sweep id, parent MLflow run, deferred promotion."""
    env = {
        contract.SWEEP_ID_ENV: str(sweep["sweep_id"]),
        # The point's promote stage only records its candidate: the sweep promotes its
        # best point once, through the same gate (rnnops.stages.promote.run_promote).
        contract.PROMOTE_MODE_ENV: "record",
    }
    if sweep.get("parent_run_id"):
        env[contract.PARENT_RUN_ID_ENV] = str(sweep["parent_run_id"])
    if sweep.get("point") is not None:
        env[contract.SWEEP_POINT_ENV] = str(sweep["point"])
    return env


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
) -> dict[str, Any]:
    """Run the DVC pipeline as Prefect tasks; with ``overrides``, as an isolated DVC experiment.

    ``pull``: ``dvc pull`` first (workspace runs); data that fails its hash check stops the
    flow before any stage runs.

    ``max_lateness_minutes`` (the Late-run policy of scheduled deployments): a run that
    starts later than this after its scheduled time, e.g. one left Late while no process
    served the deployment, does nothing and says so; the next scheduled run does the work.

    ``sweep`` (set by ``flows.sweep`` when it dispatches a point to a deployment):
    ``sweep_id``, ``parent_run_id``, ``point`` and ``name`` (the DVC experiment's
    name); the point's promotion is deferred to the sweep.
    """
    logger = get_run_logger()
    late = lateness_seconds(runtime_flow_run.scheduled_start_time)
    if too_late(late, max_lateness_minutes):
        message = (
            f"skipped: started {late / 60:.1f} min after its scheduled time, over the "
            f"max_lateness_minutes={max_lateness_minutes} policy; the next scheduled run retrains"
        )
        logger.warning(message)
        return {"skipped": message}
    root = Path(project_dir or os.getcwd()).resolve()
    remote = (sweep or {}).get("git_remote")
    if remote:  # a worker with its own clone: the sweep's commit from the git remote
        root = worker_checkout(remote, sweep["ref"], sweep["commit"])
    # Invalid params are a deterministic failure: stop before any stage runs.
    params = load_params(root / params_path, overrides)
    uri = tracking.resolve_tracking_uri(params.tracking.uri, root)
    env = dvc_driver.subprocess_env(
        {**_links_env(), **sweep_env(sweep or {}), "MLFLOW_TRACKING_URI": uri}
        if sweep
        else {**_links_env(), "MLFLOW_TRACKING_URI": uri}
    )
    if remote:
        # The clone's own code runs the stages, as on a machine that installed its clone.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(root / "src"), *filter(None, [env.get("PYTHONPATH")])]
        )
        worker_clone.point_remote_at(
            root,
            os.environ.get(contract.DVC_REMOTE_ENV),
            os.environ.get(contract.S3_ENDPOINT_ENV),
            env,
        )
    policy = {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(retry_delay_seconds),
        "retry_condition_fn": retry_transient_only,
    }

    summary: dict[str, Any] = {
        "project": str(root),
        "mode": "experiment" if overrides or sweep else "workspace",
    }
    if overrides or sweep:
        tracking.ensure_store(uri)  # create the store once, before any parallel work
        _reap_dead_runs(uri)
        if remote and (root / "dvc.lock").exists():
            # The commit's outputs from the bucket (a corrupted object stops the point here);
            # a commit that was never reproduced has none to pull, its point computes them.
            dvc_pull.with_options(**policy)(str(root), env)
        summary.update(
            dvc_experiment.with_options(**policy)(
                str(root), dict(overrides or {}), env, (sweep or {}).get("name")
            )
        )
        if remote:
            experiment_push.with_options(**policy)(str(root), remote, sweep["name"], env)
            summary["pushed_to"] = remote
    else:
        with dvc_driver.workspace_lock(root):
            for message in dvc_driver.recover_dvc_locks(root):
                logger.warning(message)
            if pull:
                dvc_pull.with_options(**policy)(str(root), env)
            changed = dvc_driver.changed_stages(root, env)
            if not changed:
                logger.info(
                    "nothing changed (data, code and params): the pipeline is up to date, no stage runs"
                )
                summary.update(noop=True, stages={})
            else:
                logger.info("changed: %s", ", ".join(changed))
                tracking.ensure_store(uri)  # create the store once, before any parallel work
                _reap_dead_runs(uri)
                stage_task = dvc_stage.with_options(**policy)
                summary["stages"] = {}
                for stage in dvc_driver.stage_order(root):
                    result = stage_task(str(root), stage, env)
                    if isinstance(result, State):  # a skipped stage's state carries its summary
                        result = result.result()
                    summary["stages"][stage] = result["ran"]
                promotion = root / "reports" / "promotion.json"
                if promotion.exists() and summary["stages"].get("promote"):
                    summary["promotion"] = read_json(promotion)
                comparison = root / "reports" / "comparison.html"
                if comparison.exists():
                    summary["comparison"] = str(comparison)
    if push:
        dvc_push.with_options(**policy)(str(root), env)
        summary["pushed"] = True

    if summary.get("noop"):
        # Nothing ran, so there is nothing new in MLflow to link: finish quickly.
        create_markdown_artifact(
            key="training-report",
            markdown=report_markdown(summary, [], []),
            description="Nothing changed: no stage ran",
        )
        return summary
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
    return summary


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
    args = parser.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)} or None
    state = training_flow(
        overrides=overrides, push=args.push, project_dir=args.project_dir, return_state=True
    )
    if not state.is_completed():
        print(f"training flow {state.type.value}: {state.message}")
        return 1
    print(json.dumps(state.result(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
