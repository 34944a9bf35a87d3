"""Schedules, serve and Late runs (issue item 21) against a real `prefect server`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import mlflow
import pytest
import yaml
from flows.deployments import MAX_LATENESS_MINUTES, MISSED_HEARTBEATS, ZOMBIE_AUTOMATION
from flows.training import lateness_seconds, too_late

from conftest import copy_project, set_params, start, stop, tiny_champion, wait_for

pytestmark = pytest.mark.integration


def _client_call(api_url, fn):
    import asyncio

    from prefect.client.orchestration import PrefectClient

    async def go():
        async with PrefectClient(api=api_url) as client:
            return await fn(client)

    return asyncio.run(go())


def _deployment(api_url, name):
    async def read(client):
        try:
            return await client.read_deployment_by_name(name)
        except Exception:
            return None

    return _client_call(api_url, read)


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

    return _client_call(api_url, read)


def api_settings(api_url):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: api_url})


def test_21_late_run_policy_skips_runs_later_than_the_limit():
    """Item 21: the stated Late-run policy: later than max_lateness_minutes -> skipped."""
    now = datetime.now(UTC)
    assert lateness_seconds(None) == 0.0
    assert lateness_seconds(now + timedelta(minutes=5), now) == 0.0
    late = lateness_seconds(now - timedelta(hours=7), now)
    assert late == pytest.approx(7 * 3600)
    assert too_late(late, 360) and not too_late(late, 480) and not too_late(late, None)
    assert MAX_LATENESS_MINUTES == 360


def test_21_a_late_run_skips_itself(prefect_harness, monkeypatch):
    """Item 21: a flow run that starts past the policy's limit does no work and says why."""
    from flows.training import training_flow
    from prefect.runtime import flow_run

    monkeypatch.setitem(
        flow_run.FIELDS, "scheduled_start_time", lambda: datetime.now(UTC) - timedelta(hours=7)
    )
    state = training_flow(project_dir="/nonexistent", max_lateness_minutes=360, return_state=True)
    assert state.is_completed()
    assert (
        "skipped" in state.result()["skipped"]
        and "max_lateness_minutes=360" in (state.result()["skipped"])
    )


def test_21_schedules_produce_runs_and_stopping_serve_pauses_deployments(
    prefect_server, tmp_path_factory, tmp_path, tiny_nltk_data
):
    """Item 21: a served deployment's schedule produces runs; a run completes; stopping the
    `serve` process pauses its deployments (Prefect's behaviour), so nothing is left Late
    for a process that is gone; the nightly run carries the Late-run policy."""
    api_url, server_env, _ = prefect_server
    # A copy of the session's tiny champion project with a new model size: the run
    # retrains (train, evaluate, promote) without paying for ingest and preprocess again.
    src, project_env, _ = tiny_champion(tmp_path_factory, tiny_nltk_data)
    project = copy_project(src, tmp_path / "project")
    set_params(project, {"models.lstm.units": 7})
    trained_before = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train@lstm"]
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
        # Item 3, Prefect's side: serving installs the automation that marks a flow run
        # Crashed once its process stops sending heartbeats (Prefect's default: every 180 s).
        from prefect.automations import Automation

        with api_settings(api_url):
            zombie = Automation.read(name=ZOMBIE_AUTOMATION)
        assert zombie.enabled
        assert zombie.trigger.after == {"prefect.flow-run.heartbeat"}
        assert zombie.trigger.within == timedelta(seconds=MISSED_HEARTBEATS * 180)
        assert zombie.actions[0].state.value == "CRASHED"
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
        assert (project / "models/lstm/model.keras").exists()
        trained = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train@lstm"]
        assert trained != trained_before
        assert trained["params"]["params.yaml"]["models.lstm"]["units"] == 7

        client = mlflow.MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name("reuters-topics")
        runs = client.search_runs(
            [exp.experiment_id], f"tags.`prefect.flow_run_id` = '{flow_run.id}'"
        )
        assert len(runs) == 1
        assert runs[0].data.tags["prefect.deployment"] == "nightly-retrain"
        assert deployment.parameters["max_lateness_minutes"] == MAX_LATENESS_MINUTES
    finally:
        stop(served)
    for name in ("training/nightly-retrain", "batch-score/batch-score"):
        assert wait_for(
            lambda name=name: _deployment(api_url, name).paused, 60, f"{name} to be paused"
        )
