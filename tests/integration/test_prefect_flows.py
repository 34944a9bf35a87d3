"""The training flow on the tiny corpus, with a temporary Prefect API."""

import asyncio
import re
import subprocess
import threading
import time

import pytest

from conftest import copy_of_tiny_champion, run, set_params

pytestmark = pytest.mark.integration


def task_runs(flow_run_id, expect: int = 0, timeout: float = 30.0) -> dict:
    """Task runs by name; task states reach the API as events, so wait for ``expect`` of them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    deadline = time.time() + timeout
    while True:
        runs = {r.name: r for r in asyncio.run(read())}
        final = all(r.state and r.state.is_final() for r in runs.values())
        if (len(runs) >= expect and final) or time.time() > deadline:
            return runs
        time.sleep(0.5)


def task_states(flow_run_id, expect: int = 0) -> dict[str, str]:
    return {name: r.state.type.value for name, r in task_runs(flow_run_id, expect).items()}


def flow_logs(flow_run_id, needle: str = "", timeout: float = 30.0) -> str:
    """The flow run's log text; logs reach the API asynchronously, so wait for ``needle``."""
    deadline = time.time() + timeout
    while True:
        text = _read_logs(flow_run_id)
        if needle in text or time.time() > deadline:
            return text
        time.sleep(0.5)


def report_artifact(flow_run_id) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read():
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
            return "\n".join(str(a.data) for a in found if a.key == "training-report")

    deadline = time.time() + 30
    while not (text := asyncio.run(read())) and time.time() < deadline:
        time.sleep(0.5)
    return text


def _read_logs(flow_run_id) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read():
        async with get_client() as client:
            logs = await client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            return "\n".join(log.message for log in logs)

    return asyncio.run(read())


def timed_logs(flow_run_id) -> list[tuple[float, str]]:
    """(timestamp, message) of the flow run's log lines, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read():
        async with get_client() as client:
            return await client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )

    logs = asyncio.run(read())
    return sorted((log.timestamp.timestamp(), log.message) for log in logs)


EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) .*\(elapsed ([\d.]+)s")


def test_flow_runs_every_stage_then_skips(prefect_harness, flow_project):
    from flows.training import training_flow

    project, _ = flow_project
    # Enough epochs for the train stage to take a few seconds: its epoch lines must reach
    # the Prefect log as they happen, not all at once when the stage ends.
    set_params(project, {"models.lstm.epochs": 12, "models.lstm.early_stopping_patience": 0})
    state = training_flow(project_dir=str(project), return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    stages = task_states(state.state_details.flow_run_id, expect=10)
    expected = {
        "check_params",
        "ingest",
        "preprocess",
        "pretrain",
        "train@rnn",
        "train@lstm",
        "evaluate@rnn",
        "evaluate@lstm",
        "promote",
        "compare",
    }
    assert set(stages) == expected and set(stages.values()) == {"COMPLETED"}
    assert all(summary["stages"][s] for s in expected)
    assert (project / "dvc.lock").exists() and (project / "models/lstm/model.keras").exists()
    assert summary["promotion"]["decision"] == "champion"
    assert len(summary["mlflow_runs"]) == 2

    import mlflow

    client = mlflow.MlflowClient()
    for run_id in summary["mlflow_runs"]:
        tags = client.get_run(run_id).data.tags
        assert tags["prefect.flow_run_id"] == str(state.state_details.flow_run_id)

    report = report_artifact(state.state_details.flow_run_id)
    for run_id in summary["mlflow_runs"]:
        assert run_id[:8] in report
    assert "| lstm |" in report and "| rnn |" in report
    assert "validation macro_f1" in report
    assert "registered version **1**" in report and "champion" in report

    flow_run_id = state.state_details.flow_run_id
    flow_logs(flow_run_id, "epoch 12/12")
    epochs = [
        (stamp, *map(float, found.groups()))
        for stamp, message in timed_logs(flow_run_id)
        if (found := EPOCH_LINE.search(message)) and found.group(2) == "12"
    ]
    assert [int(e[1]) for e in epochs] == list(range(1, 13)), epochs
    logged_over = epochs[-1][0] - epochs[0][0]
    trained_over = epochs[-1][3] - epochs[0][3]
    assert trained_over > 0.5 and logged_over >= 0.5 * trained_over, (logged_over, trained_over)
    messages = "\n".join(m for _, m in timed_logs(flow_run_id))
    # Tool noise stays out of the log; the flow run is named after what it ran.
    assert "git add dvc.lock" not in messages and "core.autostage" not in messages
    assert state.name and "None/" not in str(client.get_run(summary["mlflow_runs"][0]).data.tags)
    from prefect.client.orchestration import get_client

    async def flow_run_name():
        async with get_client() as prefect:
            return (await prefect.read_flow_run(flow_run_id)).name

    assert asyncio.run(flow_run_name()).startswith("workspace @ ")

    # A promotion param changes: check_params, promote and compare (which names the
    # champion) run; every other stage is shown as Skipped, not as a piece of work.
    set_params(project, {"promotion.min_delta": 0.001})
    changed = training_flow(project_dir=str(project), return_state=True)
    assert changed.is_completed(), changed
    names = {n: r.state.name for n, r in task_runs(changed.state_details.flow_run_id, 10).items()}
    ran = [names.pop(stage) for stage in ("check_params", "promote", "compare")]
    assert ran == ["Completed"] * 3, names
    assert set(names.values()) == {"Skipped"}, names

    again = training_flow(project_dir=str(project), return_state=True)
    assert again.is_completed()
    assert again.result()["noop"] is True
    assert task_states(again.state_details.flow_run_id) == {}
    assert "nothing changed" in flow_logs(again.state_details.flow_run_id, "nothing changed")


@pytest.fixture
def reproduced_flow_project(tmp_path_factory, tmp_path, tiny_nltk_data, monkeypatch):
    """A copy of the session's reproduced tiny champion (LSTM only) with a store of its
    own, for flows run in this process: its env is this process's env."""
    project, env = copy_of_tiny_champion(
        tmp_path_factory,
        tiny_nltk_data,
        tmp_path / "project",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    for key in ("NLTK_DATA", "PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    return project, env


def test_concurrent_experiments_leave_the_workspace_untouched(
    prefect_harness, reproduced_flow_project
):
    from flows.training import training_flow

    project, env = reproduced_flow_project
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "baseline"], project, env)
    before = (project / "dvc.lock").read_text()

    states = {}

    def launch(units):
        states[units] = training_flow(
            project_dir=str(project), overrides={"models.lstm.units": units}, return_state=True
        )

    threads = [threading.Thread(target=launch, args=(u,)) for u in (5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert all(s.is_completed() for s in states.values()), states
    names = {s.result()["experiment"] for s in states.values()}
    assert len(names) == 2 and None not in names
    assert (project / "dvc.lock").read_text() == before
    assert (
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True
        ).stdout.strip()
        == ""
    )
    shown = run(["dvc", "exp", "show", "--json"], project, env).stdout
    assert all(name in shown for name in names)
