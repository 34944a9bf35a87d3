"""Work on the team's workers: a clone of the project at one commit, stages run there.

A worker shares nothing with the machine that starts the work but its servers: the git
remote (code), the DVC remote (data, models and DVC's run cache, in a bucket), MLflow and
Prefect. Two kinds of work go to the pool:

* a sweep point (``flows.sweep``): the training flow, as a DVC experiment in the clone;
* the per-model stages of one pipeline run (``train@NAME`` / ``evaluate@NAME``), which
  depend on no other model's: :func:`run_model_stages_on_pool` pushes the outputs of the
  stages before them and dispatches one :func:`pipeline_stages_flow` per model, with the
  parent's ``dvc.lock``. The worker writes that lock into its clone, so it pulls exactly
  the parent's upstream outputs by their hashes (a stage such as word2vec need not give
  the same bytes twice), reproduces its model's stages and pushes outputs and DVC's run
  cache back. The parent then restores each dispatched stage from the run cache
  (``dvc repro --pull``: "Stage ... is cached - skipping run") and runs the rest itself,
  so the ensemble, the comparison and the promotion happen once, in its workspace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import wait
from prefect.states import State

from flows.stage_tasks import dvc_push, dvc_stage, retry_policy, worker_checkout
from rnnops.core import contract
from rnnops.systems import dvc_driver, worker_clone

# A flow run that crashed (its worker lost, a machine gone) is dispatched once more.
DISPATCH_ATTEMPTS = 2


class TeamRunError(RuntimeError):
    """Work sent to the pool did not complete, or the run cannot be sent there."""


def run_on_pool(deployment_name: str, parameters: dict[str, Any], label: str):
    """A flow run of ``deployment_name`` on its work pool, waited for; once more if it crashed.

    Crashed means the process running it is gone (a worker killed, a machine lost), not a
    failure of the work itself; another worker takes it. Results are pushed only at the
    end of the work, so a lost attempt leaves nothing to clash with.
    """
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    for attempt in range(1, DISPATCH_ATTEMPTS + 1):
        flow_run = run_deployment(
            deployment_name, parameters=parameters, timeout=None, as_subflow=False
        )
        state = flow_run.state
        logger.info("%s: flow run %s ended %s", label, flow_run.name, state.type.value)
        if not state.is_crashed() or attempt == DISPATCH_ATTEMPTS:
            break
        logger.warning("%s: its worker was lost (%s); dispatching it again", label, state.message)
    return flow_run


def clone_env(root: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment stages get in a worker's clone; the clone's DVC remote set to the bucket.

    The clone's own code runs the stages, as on a machine that installed its clone; the
    bucket (``DVC_REMOTE_URL``, ``S3_ENDPOINT_URL``) comes from the worker's environment.
    """
    env = {
        **env,
        "PYTHONPATH": os.pathsep.join([str(root / "src"), *filter(None, [env.get("PYTHONPATH")])]),
    }
    worker_clone.point_remote_at(
        root,
        os.environ.get(contract.DVC_REMOTE_ENV),
        os.environ.get(contract.S3_ENDPOINT_ENV),
        env,
    )
    return env


def stages_run_name() -> str:
    from prefect.runtime import flow_run as runtime_flow_run

    stages = (runtime_flow_run.parameters or {}).get("stages") or []
    return f"stages {', '.join(stages)}"


@flow(
    name="pipeline-stages",
    flow_run_name=stages_run_name,
    log_prints=True,
    persist_result=False,
    description="On a worker: some stages of one pipeline run, in the worker's own clone at "
    "the run's commit; their outputs and DVC's run cache pushed to the DVC remote.",
)
def pipeline_stages_flow(stages: list[str], work: dict[str, Any]) -> dict[str, Any]:
    """Reproduce ``stages`` in this worker's clone at ``work["commit"]``.

    ``work``: ``git_remote``, ``ref``, ``commit``, ``lock`` (the parent's ``dvc.lock``) and
    ``env`` (what the stages log to: the tracking URI and the parent flow run's ids, never
    the parent's whole environment). The stages before them are the parent's, pulled by
    the hashes its lock records.
    """
    root = worker_checkout(work["git_remote"], work["ref"], work["commit"])
    if work.get("lock"):
        (root / "dvc.lock").write_text(work["lock"])
    env = dvc_driver.subprocess_env(clone_env(root, dict(work.get("env") or {})))
    policy = retry_policy(work.get("retries", 2), work.get("retry_delay_seconds", 10.0))
    ran = {}
    for stage in stages:
        result = dvc_stage.with_options(**policy)(str(root), stage, env, pull=True, upstream=True)
        if isinstance(result, State):  # a skipped stage's state carries its summary
            result = result.result()
        ran[stage] = result["ran"]
    dvc_push.with_options(**policy)(str(root), env, targets=stages, run_cache=True)
    return {"clone": str(root), "stages": ran}


@task(name="model-stages-dispatch", task_run_name="{name} on the pool", persist_result=False)
def dispatch_model_stages(
    name: str, stages: list[str], work: dict[str, Any], deployment_name: str
) -> dict[str, Any]:
    flow_run = run_on_pool(deployment_name, {"stages": stages, "work": work}, f"model {name}")
    if not flow_run.state.is_completed():
        raise TeamRunError(
            f"model {name} ({', '.join(stages)}): flow run {flow_run.id} ended "
            f"{flow_run.state.type.value}: {flow_run.state.message}"
        )
    return {"flow_run": flow_run.name, "stages": stages}


def publish_run_commit(root: Path, git_remote: str, run_id: str) -> dict[str, str]:
    """The workspace's commit on the git remote, where the workers fetch it from."""
    ref = worker_clone.run_ref(run_id)
    commit = worker_clone.publish_commit(root, git_remote, ref)
    return {"git_remote": git_remote, "ref": ref, "commit": commit}


def check_team_run(
    uri: str, git_remote: str | None, deployment_name: str | None, experiment: bool = False
) -> None:
    """Both or neither, for a workspace run; workers log to a tracking server everyone reaches."""
    if git_remote and experiment:
        raise TeamRunError(
            "git_remote with overrides: an experiment goes to the workers as a sweep point "
            "(rnnops sweep --deployment training/sweep-point --git-remote URL)"
        )
    if bool(git_remote) != bool(deployment_name):
        raise TeamRunError(
            "stages go to workers with both git_remote (where they clone the code) and "
            "stage_deployment (e.g. pipeline-stages/team); give both, or neither"
        )
    if git_remote and not uri.startswith(("http://", "https://")):
        raise TeamRunError(
            f"MLFLOW_TRACKING_URI is {uri}, a store on this machine: workers log to it too, so "
            "it must be a tracking server they reach (http://...); set MLFLOW_TRACKING_URI"
        )


def run_model_stages_on_pool(
    root: Path,
    order: list[str],
    env: dict[str, str],
    stage_env: dict[str, str],
    clone: dict[str, str],
    deployment_name: str,
    policy: dict[str, Any],
) -> list[str]:
    """Send each model's changed stages to the pool; return the stages that ran there.

    Called when the stages before the models have run here; their outputs go to the DVC
    remote first and ``dvc.lock`` with each model, so each worker trains on exactly them.
    """
    logger = get_run_logger()
    groups = dvc_driver.model_stage_groups(order, dvc_driver.changed_stages(root, env))
    if not groups:
        return []
    first = min(order.index(stages[0]) for stages in groups.values())
    upstream = [s for s in order[:first] if s.partition("@")[0] not in dvc_driver.MODEL_STAGES]
    dvc_push.with_options(**policy)(str(root), env, targets=upstream)
    work = {**clone, "env": stage_env, "lock": (root / "dvc.lock").read_text()}
    futures = [
        dispatch_model_stages.submit(name, stages, work, deployment_name)
        for name, stages in groups.items()
    ]
    wait(futures)
    failed = [f for f in futures if not f.state.is_completed()]
    if failed:
        errors = [str(f.result(raise_on_failure=False)) for f in failed]
        raise TeamRunError(f"{len(failed)} of {len(futures)} models failed on the pool: {errors}")
    for future in futures:
        logger.info(
            "%s ran on the pool (%s)", future.result()["stages"], future.result()["flow_run"]
        )
    return [stage for stages in groups.values() for stage in stages]
