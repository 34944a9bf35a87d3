"""Deployments against a real `prefect server` on 127.0.0.1: schedules, serve, a process worker."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import mlflow
import pytest

from conftest import BIN_DIR, PROJECT_ROOT, free_port, make_project, set_params, tiny_params

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def start(cmd, env, log_path, cwd=PROJECT_ROOT):
    log = open(log_path, "w")  # noqa: SIM115 - open for the process's lifetime
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(base / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_API_URL": url,
    }
    proc = start(
        [
            str(BIN_DIR / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
        ],
        env,
        base / "server.log",
    )

    def healthy():
        assert proc.poll() is None, (base / "server.log").read_text()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(healthy, 120, "prefect server health")
    yield url, env, base
    stop(proc)


def api_settings(api_url):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: api_url})


def client_call(api_url, fn):
    from prefect.client.orchestration import PrefectClient

    async def go():
        async with PrefectClient(api=api_url) as client:
            return await fn(client)

    return asyncio.run(go())


def test_served_deployment_schedule_and_run(prefect_server, tmp_path, tiny_nltk_data):
    api_url, server_env, _ = prefect_server
    params = tiny_params()
    params["models"] = {"lstm": params["models"]["lstm"]}
    project, project_env = make_project(tmp_path / "project", tiny_nltk_data, params)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        **project_env,
        **{k: v for k, v in server_env.items() if k.startswith("PREFECT")},
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }

    served = start(
        [
            sys.executable,
            "-m",
            "flows.deployments",
            "--project-dir",
            str(project),
            "--retrain-cron",
            "0 2 * * *",
        ],
        env,
        tmp_path / "serve.log",
    )
    try:
        deployment = wait_for(
            lambda: _deployment(api_url, "training/nightly-retrain"),
            120,
            "the nightly-retrain deployment",
        )
        assert deployment.schedules[0].schedule.cron == "0 2 * * *"
        assert deployment.global_concurrency_limit.limit == 1
        upcoming = wait_for(lambda: _scheduled_runs(api_url, deployment.id), 60, "scheduled runs")
        now = datetime.now(UTC)
        for flow_run in upcoming:
            start_at = flow_run.expected_start_time.astimezone(UTC)
            assert (start_at.hour, start_at.minute) == (2, 0) and start_at > now

        from prefect.deployments import run_deployment

        with api_settings(api_url):
            flow_run = run_deployment("training/nightly-retrain", timeout=600)
        assert flow_run.state.is_completed(), (tmp_path / "serve.log").read_text()[-4000:]
        assert (project / "models/lstm/model.keras").exists() and (project / "dvc.lock").exists()

        client = mlflow.MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name("reuters-topics")
        runs = client.search_runs(
            [exp.experiment_id], f"tags.`prefect.flow_run_id` = '{flow_run.id}'"
        )
        assert len(runs) == 1
        assert runs[0].data.tags["prefect.deployment"] == "nightly-retrain"
    finally:
        stop(served)


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
