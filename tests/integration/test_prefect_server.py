"""Deployments against a real `prefect server` on 127.0.0.1: a process worker.

(Schedules, `serve` and Late runs: tests/reliability/test_schedules.py.)
"""

import subprocess
import sys

import pytest

from conftest import (
    BIN_DIR,
    PROJECT_ROOT,
    copy_project,
    set_params,
    start,
    stop,
    tiny_champion,
)

pytestmark = pytest.mark.integration


def api_settings(api_url):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: api_url})


def test_process_worker_picks_up_work_pool_runs(
    prefect_server, tmp_path_factory, tmp_path, tiny_nltk_data
):
    api_url, server_env, _ = prefect_server
    # A copy of the session's tiny champion project; the new model size below makes the
    # run retrain without paying for ingest and preprocess again.
    src, project_env, _ = tiny_champion(tmp_path_factory, tiny_nltk_data)
    project = copy_project(src, tmp_path / "project")
    model_before = (project / "models/lstm/model.keras").stat().st_mtime_ns
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
        assert (project / "models/lstm/model.keras").stat().st_mtime_ns != model_before
    finally:
        stop(worker)
