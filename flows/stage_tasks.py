"""The Prefect tasks the flows share: DVC stages, experiments, pulls and pushes, as tasks.

Each task calls :mod:`rnnops.systems.dvc_driver` (or the experiment and worker-clone
modules beside it) and streams DVC's output to the run's log as it is printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.runtime import task_run as runtime_task_run
from prefect.states import Completed, State
from prefect.tasks import exponential_backoff

from rnnops.core import contract, stage_output
from rnnops.systems import dvc_driver, dvc_experiments, tracking, worker_clone


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


def retry_policy(retries: int, retry_delay_seconds: float) -> dict[str, Any]:
    """Task options: transient failures retried with exponential backoff, nothing else."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(retry_delay_seconds),
        "retry_condition_fn": retry_transient_only,
    }


def reap_dead_runs(uri: str) -> None:
    """Runs left RUNNING by a killed process (SIGKILL) are marked KILLED before new work."""
    for item in tracking.doctor(uri):
        get_run_logger().warning(
            "MLflow run %s (%s) marked KILLED: %s", item["run_id"], item["name"], item["reason"]
        )


def execution_env(env: dict[str, str]) -> dict[str, str]:
    """The task run's id: the same on every retry, so a retried stage reuses its MLflow run."""
    if runtime_task_run.id:
        return {**env, tracking.EXECUTION_ENV: str(runtime_task_run.id)}
    return env


@task(name="dvc-stage", task_run_name="{stage}", persist_result=False)
def dvc_stage(
    root: str, stage: str, env: dict[str, str], pull: bool = False, upstream: bool = False
) -> dict[str, Any] | State:
    """One stage; ``pull``: restored from the DVC remote's run cache when it ran elsewhere.

    ``upstream``: with the stages it depends on (:func:`dvc_driver.run_stage`).
    """
    logger = get_run_logger()
    try:
        result = dvc_driver.run_stage(
            root, stage, execution_env(env), on_line=stream_to_log(), pull=pull, upstream=upstream
        )
    except dvc_driver.StageError as exc:
        logger.error(str(exc))
        raise
    summary = {
        "stage": stage,
        "ran": result.ran or result.restored,
        "seconds": round(result.seconds, 2),
    }
    if result.restored:
        logger.info("%s: ran on a worker; its outputs restored from the run cache", stage)
        return {**summary, "restored": True}
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
            root, overrides, execution_env(env), name=name, on_line=stream_to_log()
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
def dvc_push(
    root: str, env: dict[str, str], targets: list[str] | None = None, run_cache: bool = False
) -> None:
    dvc_driver.push(root, env, on_line=stream_to_log(), targets=targets, run_cache=run_cache)


def links_env() -> dict[str, str]:
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
