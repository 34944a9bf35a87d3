"""Sweeps on the tiny corpus: parallel DVC experiments, one parent MLflow run, one promotion."""

import subprocess
import sys

import mlflow
import pytest

from conftest import BIN_DIR, PROJECT_ROOT, free_port, make_project, run, tiny_params

pytestmark = pytest.mark.integration

EXPERIMENT, MODEL = "reuters-topics", "reuters-topics"


@pytest.fixture
def sweep_project(tmp_path, tiny_nltk_data, monkeypatch):
    params = tiny_params()
    params["models"] = {"lstm": params["models"]["lstm"]}  # one model per point: fast
    project, env = make_project(tmp_path / "project", tiny_nltk_data, params)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key in ("NLTK_DATA", "PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    return project, env


def git_status(project) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True
    ).stdout.strip()


def test_grid_sweep_runs_in_parallel_and_promotes_the_best_once(prefect_harness, sweep_project):
    from flows.sweep import sweep_flow

    project, env = sweep_project
    run(["dvc", "repro"], project, env)  # a champion exists before the sweep
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "baseline"], project, env)
    lock_before = (project / "dvc.lock").read_text()
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 1

    # A 2 x 1 grid: both points at once (max_parallel 2), one round of training. How a
    # grid expands is test_expand_space_grid_and_list's; a second round would only repeat.
    space = {"models.lstm.units": [5, 6], "models.lstm.learning_rate": [0.02]}
    state = sweep_flow(space, max_parallel=2, project_dir=str(project), return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert result["failed"] == [] and len(result["points"]) == 2
    assert all(p["status"] == "completed" for p in result["points"])

    # Two experiments, each in DVC's experiment refs.
    shown = run(["dvc", "exp", "show", "--json"], project, env).stdout
    assert all(p["experiment"] in shown for p in result["points"])

    # Two child runs with distinct params under one parent that holds the summary table.
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [exp.experiment_id], f"tags.`rnnops.sweep_id` = '{result['sweep_id']}'"
    )
    children = [r for r in runs if r.data.tags.get("rnnops.sweep_role") != "parent"]
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {result["parent_run_id"]}
    combos = {
        (r.data.params["model.units"], r.data.params["model.learning_rate"]) for r in children
    }
    assert combos == {("5", "0.02"), ("6", "0.02")}
    assert all(r.info.status == "FINISHED" for r in children)
    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep_summary.json", "sweep_summary.md", "promotion.json"} <= artifacts
    # Every child has the comparison report of its point.
    assert {a.path for a in client.list_artifacts(children[0].info.run_id, "comparison")} >= {
        "comparison/comparison.md",
        "comparison/comparison.html",
    }

    # The points deferred their promotion: exactly one new version, the best point's.
    best, promotion = result["best"], result["promotion"]
    assert best["score"] == max(p["score"] for p in result["points"])
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert len(versions) == 2
    new = next(v for v in versions if str(v.version) == promotion["candidate_version"])
    assert new.run_id == best["candidate_run_id"]
    assert promotion["decision"] in ("champion", "challenger")
    assert promotion["decision"] in client.get_model_version(MODEL, new.version).aliases
    assert promotion["champion_version"] == "1"

    # The workspace is untouched.
    assert (project / "dvc.lock").read_text() == lock_before
    assert git_status(project) == ""


def test_a_failing_point_is_reported_and_the_others_complete(prefect_harness, sweep_project):
    from flows.sweep import sweep_flow

    project, env = sweep_project
    space = [
        {"models.lstm.units": 5},
        # Valid params, but a topic the corpus lacks: preprocess fails in this point only.
        {"preprocess.label_set": "list", "preprocess.topics": ["grain", "cocoa"]},
    ]
    state = sweep_flow(space, max_parallel=2, project_dir=str(project), return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert result["failed"] == [1]
    ok, bad = result["points"]
    assert ok["status"] == "completed" and bad["status"] == "failed"
    assert "preprocess" in bad["error_detail"] or "cocoa" in bad["error_detail"]
    assert result["best"]["point"] == 0 and result["promotion"]["decision"] == "champion"
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    table = client.get_run(result["parent_run_id"])
    assert table.data.metrics["failed_points"] == 1
    assert git_status(project) == "" and not (project / "dvc.lock").exists()


def test_expand_space_grid_and_list():
    from flows.sweep import SweepError, expand_space

    assert expand_space({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert expand_space([{"a": 1}, {"b": 2}]) == [{"a": 1}, {"b": 2}]
    with pytest.raises(SweepError):
        expand_space([])
    with pytest.raises(SweepError):
        expand_space({"a": []})


def test_two_process_workers_share_a_dispatched_sweep(tmp_path, tiny_nltk_data, mlflow_server):
    """Points as flow runs of a training deployment on a work pool, against a real server."""
    from test_prefect_server import api_settings

    from conftest import start, stop, wait_for

    params = tiny_params()
    params["models"] = {"lstm": params["models"]["lstm"]}
    # One MLflow server shared by both workers; a model name of its own in that registry.
    params["promotion"]["registered_model"] = "sweep-dispatch"
    project, project_env = make_project(tmp_path / "project", tiny_nltk_data, params)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **project_env,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "MLFLOW_TRACKING_URI": mlflow_server,
    }
    prefect = str(BIN_DIR / "prefect")
    server = start(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env,
        tmp_path / "server.log",
    )
    workers = []
    try:

        def healthy():
            import urllib.request

            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for(healthy, 120, "prefect server health")
        subprocess.run(
            [prefect, "work-pool", "create", "rnnops-sweep", "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
        )
        deploy = (
            "from flows.training import training_flow\n"
            "training_flow.from_source(source='.', entrypoint='flows/training.py:training_flow')"
            ".deploy(name='sweep-point', work_pool_name='rnnops-sweep')\n"
        )
        subprocess.run(
            [sys.executable, "-c", deploy], cwd=PROJECT_ROOT, env=env, check=True, timeout=120
        )
        worker_cmd = [prefect, "worker", "start", "--pool", "rnnops-sweep", "--type", "process"]
        worker_cmd += ["--limit", "1"]
        for name in ("worker-a", "worker-b"):
            workers.append(
                start(
                    [*worker_cmd, "--name", name],
                    env,
                    tmp_path / f"{name}.log",
                )
            )
        from flows.sweep import sweep_flow

        with api_settings(api_url):
            import os

            os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
            try:
                state = sweep_flow(
                    {"models.lstm.units": [5, 6]},
                    max_parallel=2,
                    project_dir=str(project),
                    dispatch="deployment",
                    deployment_name="training/sweep-point",
                    return_state=True,
                )
            finally:
                del os.environ["MLFLOW_TRACKING_URI"]
        logs = {n: (tmp_path / f"{n}.log").read_text() for n in ("worker-a", "worker-b")}
        assert state.is_completed(), (state, logs)
        result = state.result()
        assert result["failed"] == [] and len(result["points"]) == 2
        flow_runs = [p["flow_run_id"] for p in result["points"]]
        # Each worker ran one of the two points.
        for name, text in logs.items():
            assert any(fr in text for fr in flow_runs), (name, text[-3000:])
        client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
        exp = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs(
            [exp.experiment_id], f"tags.`rnnops.sweep_id` = '{result['sweep_id']}'"
        )
        children = [r for r in runs if r.data.tags.get("rnnops.sweep_role") != "parent"]
        assert len(children) == 2
        assert {r.data.tags["mlflow.parentRunId"] for r in children} == {result["parent_run_id"]}
        assert {r.data.tags["prefect.flow_run_id"] for r in children} == set(flow_runs)
        assert result["promotion"]["decision"] == "champion"
        assert git_status(project) == ""
    finally:
        from prefect.logging.handlers import APILogWorker

        with api_settings(api_url):
            APILogWorker.drain_all(timeout=10)  # ship this process's logs before the server goes
        for proc in workers:
            stop(proc)
        stop(server)
