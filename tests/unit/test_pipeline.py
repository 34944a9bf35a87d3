import subprocess

import pytest

from rnnops.systems.dvc_driver import (
    InvalidInputError,
    RepositoryBusyError,
    StageError,
    raise_for_failure,
)


def done(code: int, stdout: str = "", stderr: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["dvc"], code, stdout, stderr)


def test_success_raises_nothing():
    raise_for_failure(done(0, "Running stage 'ingest'"), "ingest")


def test_bad_input_is_not_transient():
    err = (
        "rnnops preprocess: error: preprocess.topics: ['cocoa'] have no training documents\n"
        "ERROR: failed to reproduce 'preprocess': failed to run: rnnops preprocess ..., exited with 2"
    )
    with pytest.raises(InvalidInputError) as info:
        raise_for_failure(done(255, stderr=err), "preprocess")
    assert info.value.exit_code == 2 and not info.value.transient
    assert "cocoa" in str(info.value)


def test_unexpected_failure_is_transient():
    err = (
        "rnnops train: error: ConnectionError: MLflow unreachable\n"
        "ERROR: failed to reproduce 'train@lstm': failed to run: rnnops train lstm ..., exited with 1"
    )
    with pytest.raises(StageError) as info:
        raise_for_failure(done(255, stderr=err), "train@lstm")
    assert type(info.value) is StageError and info.value.transient


def test_busy_repository_fails_fast_and_is_not_retried():
    err = "ERROR: Unable to acquire lock. Most likely another DVC process is running or was terminated abruptly."
    with pytest.raises(RepositoryBusyError, match="busy") as info:
        raise_for_failure(done(255, stderr=err), "ingest")
    assert not info.value.transient


def test_terminated_stage_is_not_retried():
    err = (
        "ERROR: failed to reproduce 'train@lstm': failed to run: rnnops train lstm, exited with 143"
    )
    with pytest.raises(StageError) as info:
        raise_for_failure(done(255, stderr=err), "train@lstm")
    assert not info.value.transient


HOLD = (
    "import sys, time\n"
    "from rnnops.systems.dvc_driver import workspace_lock\n"
    "with workspace_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


def hold_workspace(root):
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


ORDER = [
    "check_params",
    "ingest",
    "preprocess",
    "pretrain",
    "baseline",
    "train@boe",
    "train@lstm",
    "evaluate@boe",
    "evaluate@lstm",
    "ensemble",
    "compare",
    "promote",
]


def test_model_stage_groups_hold_both_stages_of_each_changed_model():
    from rnnops.systems.dvc_driver import model_stage_groups

    groups = model_stage_groups(ORDER, ["train@lstm", "preprocess"])
    assert groups == {"lstm": ["train@lstm", "evaluate@lstm"]}
    # A model whose evaluation alone changed is a group too; the others stay out.
    assert model_stage_groups(ORDER, ["evaluate@boe"]) == {"boe": ["train@boe", "evaluate@boe"]}
    assert model_stage_groups(ORDER, ["ensemble", "compare"]) == {}


def test_a_team_run_needs_both_a_git_remote_and_a_stage_deployment_and_a_server():
    from flows.team import TeamRunError, check_team_run

    check_team_run("sqlite:///mlruns.db", None, None)  # a local run: nothing to check
    check_team_run("http://mlflow:5000", "git@host:team.git", "pipeline-stages/team")
    with pytest.raises(TeamRunError, match="give both"):
        check_team_run("http://mlflow:5000", "git@host:team.git", None)
    with pytest.raises(TeamRunError, match="MLFLOW_TRACKING_URI"):
        check_team_run("sqlite:///mlruns.db", "git@host:team.git", "pipeline-stages/team")
    with pytest.raises(TeamRunError, match="sweep point"):
        check_team_run("http://mlflow:5000", "git@host:team.git", "pipeline-stages/team", True)
