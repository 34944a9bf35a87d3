"""Deployments against a real `prefect server` on 127.0.0.1: schedules, serve, a process worker."""

import asyncio
import subprocess
import sys

import pytest

from conftest import (
    BIN_DIR,
    PROJECT_ROOT,
    make_project,
    set_params,
    start,
    stop,
    tiny_params,
)

pytestmark = pytest.mark.integration


def api_settings(api_url):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: api_url})


def client_call(api_url, fn):
    from prefect.client.orchestration import PrefectClient

    async def go():
        async with PrefectClient(api=api_url) as client:
            return await fn(client)

    return asyncio.run(go())


def test_process_worker_picks_up_work_pool_runs(prefect_server, tmp_path, tiny_nltk_data):
    api_url, server_env, _ = prefect_server
    params = tiny_params()
    params["models"] = {"lstm": params["models"]["lstm"]}
    project, project_env = make_project(tmp_path / "project", tiny_nltk_data, params)
    env = {
        **project_env,
        **{k: v for k, v in server_env.items() if k.startswith("PREFECT")},
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    prefect = str(BIN_DIR / "prefect")
    subprocess.run(
        [prefect, "work-pool", "create", "rnnops-test", "--type", "process"],
        env=env,
        check=True,
        capture_output=True,
    )
    deploy = (
        "from flows.training import training_flow\n"
        "training_flow.from_source(source='.', entrypoint='flows/training.py:training_flow').deploy("
        f"name='pool-retrain', work_pool_name='rnnops-test', parameters={{'project_dir': {str(project)!r}}})\n"
    )
    subprocess.run(
        [sys.executable, "-c", deploy],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    set_params(project, {"models.lstm.units": 7})

    worker = start(
        [prefect, "worker", "start", "--pool", "rnnops-test", "--type", "process", "--limit", "1"],
        env,
        tmp_path / "worker.log",
    )
    try:
        from prefect.deployments import run_deployment

        with api_settings(api_url):
            flow_run = run_deployment("training/pool-retrain", timeout=600)
        assert flow_run.state.is_completed(), (tmp_path / "worker.log").read_text()[-4000:]
        assert (project / "models/lstm/model.keras").exists()
    finally:
        stop(worker)


def _deployment(api_url, name):
    async def read(client):
        try:
            return await client.read_deployment_by_name(name)
        except Exception:
            return None

    return client_call(api_url, read)


def _scheduled_runs(api_url, deployment_id):
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    async def read(client):
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )

    return client_call(api_url, read)
