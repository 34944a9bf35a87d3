"""The team stack of scripts/stack.py: a pipeline run against PostgreSQL, S3 and the servers.

One `dvc repro` on the tiny corpus (LSTM only) logs to the stack's `mlflow server`; its runs
must be rows in PostgreSQL, its artifacts objects in the bucket, its DVC outputs pushed to the
bucket remote, and its champion loadable from the registry. Then the stack stops, leaving no
process behind.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN_DIR, PROJECT_ROOT, make_project, run, tiny_params
from rnnops.testing.processes import free_port, start, stop, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.stack,
    pytest.mark.skipif(
        not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) and not shutil.which("pg_ctl"),
        reason="PostgreSQL is not installed (apt-get install postgresql; .ci/run does)",
    ),
]
STACK = [sys.executable, str(PROJECT_ROOT / "scripts" / "stack.py")]
# Prefect's shortest: a flow run silent for 3 heartbeats is marked Crashed (its worker lost).
HEARTBEAT_SECONDS = 30


def stack(
    command: str, state: Path, check: bool = True, **extra: str
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}", **extra}
    proc = subprocess.run(
        [*STACK, command, "--state-dir", str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"stack {command} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def parse(status: str) -> dict[str, str]:
    values = {}
    for line in status.splitlines():
        name, _, value = line.partition("=")
        values[name] = shlex.split(value)[0] if value else ""
    return values


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stack_pids(state: Path) -> set[int]:
    """Every process whose command line names the state directory or a stack port."""

    info = json.loads((state / "stack.json").read_text())
    ports = {str(info[k]) for k in ("pg_port", "s3_port", "mlflow_port", "prefect_port")}
    groups = {pgid for pgid in info.get("pids", {}).values() if pgid}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            group = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
        except (OSError, IndexError, ValueError):
            continue
        words = [a.decode(errors="replace") for a in args]
        line = " ".join(words)
        if str(state) in line or (ports & set(words) and "127.0.0.1" in line) or group in groups:
            found.add(int(entry.name))
    return found


@pytest.fixture(scope="session")
def team_stack(tiny_nltk_data):
    # PostgreSQL runs as the 'postgres' user when tests run as root, and that user must
    # reach the cluster's directory: pytest's tmp dirs are private to their owner.
    state = Path(tempfile.mkdtemp(prefix="rnnops-stack-"))
    state.chmod(0o755)
    try:
        # Two workers, each with its own clone; they read the tiny corpus like any machine
        # that has the corpus installed.
        values = parse(
            stack(
                "up",
                state,
                STACK_WORKERS="2",
                NLTK_DATA=str(tiny_nltk_data),
                PREFECT_WORKER_QUERY_SECONDS="2",
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(HEARTBEAT_SECONDS),
            ).stdout
        )
        assert values["STACK"] == "up", values
        yield state, values
    finally:
        stack("down", state, check=False)
        shutil.rmtree(state, ignore_errors=True)


def team_project(values, tmp_path, nltk_data, registered_model, lstm=None, models=("lstm",)):
    """A tiny project set up as a team member does once: the bucket as its DVC remote."""
    params = tiny_params()
    params["models"] = {name: params["models"][name] for name in models}
    params["models"]["lstm"] = {**params["models"]["lstm"], **(lstm or {})}
    params["promotion"]["registered_model"] = registered_model
    project, env = make_project(tmp_path / "project", nltk_data, params, with_flows=True)
    env.update(
        {
            k: values[k]
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
        },
        MLFLOW_TRACKING_URI=values["MLFLOW_TRACKING_URI"],
        PREFECT_API_URL=values["PREFECT_API_URL"],
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    dvc = str(BIN_DIR / "dvc")
    run([dvc, "remote", "add", "-d", "team", values["DVC_REMOTE_URL"]], project, env)
    run([dvc, "remote", "modify", "team", "endpointurl", values["S3_ENDPOINT_URL"]], project, env)
    return project, env


def commit_and_push(project, env, remote: str, space: str, message: str) -> None:
    """The sweep file committed and the commit on the team's git remote (branch main)."""
    (project / "space.yaml").write_text(space)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", message], project, env)
    run(["git", "push", "-q", "--force", remote, "HEAD:refs/heads/main"], project, env)


def s3_client(values: dict):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=values["S3_ENDPOINT_URL"],
        region_name=values["AWS_DEFAULT_REGION"],
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
    )


def dispatched_sweep(project, env, remote: str, max_parallel: int) -> list[str]:
    """The training flow deployed from the git remote; the sweep command that uses it."""
    deploy = f"from flows.deployments import deploy_sweep_point; deploy_sweep_point({remote!r})"
    run([sys.executable, "-c", deploy], project, env)
    sweep = [sys.executable, "-m", "flows.sweep", "space.yaml", "--max-parallel"]
    return [
        *sweep,
        str(max_parallel),
        "--deployment",
        "training/sweep-point",
        "--git-remote",
        remote,
    ]


def s3_keys(values: dict, prefix: str) -> list[str]:
    s3 = s3_client(values)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=values["S3_BUCKET"], Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_a_sweep_runs_on_two_workers_in_clones_of_their_own(team_stack, tmp_path, tiny_nltk_data):
    import mlflow

    state, values = team_stack
    remote = values["GIT_REMOTE_URL"]
    project, env = team_project(values, tmp_path, tiny_nltk_data, "stack-sweep")
    commit_and_push(project, env, remote, "space:\n  models.lstm.units: [5, 6]\n", "a sweep")
    out = run(dispatched_sweep(project, env, remote, 2), project, env, timeout=1200).stdout
    assert "2 of 2 points completed" in out, out[-3000:]

    # Each worker ran one point in its own clone, from the git remote, not from the project.
    homes = [state / "workers" / name for name in ("worker-1", "worker-2")]
    for home in homes:
        assert (home / "project" / ".git").is_dir(), list(home.iterdir())
        log = (state / "logs" / f"{home.name}.log").read_text()
        assert "Completed" in log, log[-2000:]
    # Their experiments are refs in the git remote and in the project (pulled back).
    remote_refs = run(["git", "ls-remote", remote, "refs/exps/*"], project, env).stdout
    local_refs = run(["git", "for-each-ref", "refs/exps"], project, env).stdout
    assert remote_refs.count("refs/exps/") == 2 and local_refs.count("refs/exps/") == 2
    # Runs in PostgreSQL (through the server), children of one parent; one promotion.
    client = mlflow.MlflowClient(values["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reuters-topics")
    runs = client.search_runs([exp.experiment_id], "tags.`rnnops.sweep_role` = 'parent'")
    parent = max(runs, key=lambda r: r.info.start_time)
    children = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    versions = client.search_model_versions("name='stack-sweep'")
    champion = client.get_model_version_by_alias("stack-sweep", "champion")
    assert len(versions) == 1 and champion.version == versions[0].version
    # Their outputs are objects in the bucket; the champion loads from it.
    assert any(k.endswith("model.keras") or "/files/md5/" in k for k in s3_keys(values, "dvc/"))
    from rnnops.systems.tracking import load_text_model

    mlflow.set_tracking_uri(values["MLFLOW_TRACKING_URI"])
    import pandas as pd

    model = load_text_model("models:/stack-sweep@champion")
    assert len(model.predict(pd.DataFrame({"text": ["wheat exports rose"]}))) == 1
    assert run(["git", "status", "--porcelain"], project, env).stdout.strip() == ""


def test_a_corrupted_object_in_the_bucket_fails_the_point_that_pulls_it(
    team_stack, tmp_path, tiny_nltk_data
):
    import mlflow

    state, values = team_stack
    dvc, remote = str(BIN_DIR / "dvc"), values["GIT_REMOTE_URL"]
    project, env = team_project(values, tmp_path, tiny_nltk_data, "stack-corrupt")
    run([dvc, "repro", "preprocess"], project, env)  # the corpus and its processed form
    run([dvc, "push"], project, env)
    commit_and_push(project, env, remote, "space:\n  models.lstm.units: [7]\n", "data pushed")

    # One object of the commit's outputs is overwritten in the bucket.
    s3 = s3_client(values)
    lock = (project / "dvc.lock").read_text()
    corrupted = next(
        k
        for k in s3_keys(values, "dvc/files/md5/")
        if not k.endswith(".dir") and k.split("/")[-1] in lock
    )
    s3.put_object(Bucket=values["S3_BUCKET"], Key=corrupted, Body=b"not the data")

    refs_before = run(["git", "ls-remote", remote, "refs/exps/*"], project, env).stdout
    sweep = dispatched_sweep(project, env, remote, 1)
    proc = run(sweep, project, env, check=False, timeout=1200)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert "every point failed" in text or "0 of 1 points completed" in text, text[-3000:]
    worker_logs = "".join((state / "logs" / f"worker-{k}.log").read_text() for k in (1, 2))
    assert "refused data from the remote" in worker_logs, worker_logs[-3000:]
    # Nothing trained on it: no experiment came back, no version was registered.
    assert run(["git", "ls-remote", remote, "refs/exps/*"], project, env).stdout == refs_before
    client = mlflow.MlflowClient(values["MLFLOW_TRACKING_URI"])
    assert client.search_model_versions("name='stack-corrupt'") == []


def kill_worker(home: Path) -> list[int]:
    """SIGKILL every process of a worker: the worker, its flow run and that run's stages."""
    import signal

    marker = f"RNNOPS_WORKER_HOME={home}".encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return killed


def test_a_worker_killed_mid_point_hands_the_point_to_the_other(
    team_stack, tmp_path, tiny_nltk_data
):
    import mlflow

    state, values = team_stack
    remote = values["GIT_REMOTE_URL"]
    project, env = team_project(values, tmp_path, tiny_nltk_data, "stack-killed", {"epochs": 3})
    commit_and_push(project, env, remote, "space:\n  models.lstm.units: [9]\n", "one point")
    zombies = f"from flows.deployments import ensure_zombie_automation as z; z({HEARTBEAT_SECONDS})"
    run([sys.executable, "-c", zombies], project, env)
    logs = {k: state / "logs" / f"worker-{k}.log" for k in (1, 2)}
    sizes = {k: log.stat().st_size for k, log in logs.items()}
    sweep = dispatched_sweep(project, env, remote, 1)
    # The sweep's own flow run beats as often, or the automation would take it for lost.
    env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_SECONDS)
    proc = subprocess.Popen(
        sweep, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        # Mid-point: one worker is training; every process it has dies at once.
        deadline, busy = time.time() + 300, None
        while busy is None and time.time() < deadline and proc.poll() is None:
            for k, log in logs.items():
                if "Running stage 'train@lstm'" in log.read_text()[sizes[k] :]:
                    busy = k
            time.sleep(0.5)
        assert busy is not None, "no worker started training the point"
        assert kill_worker(state / "workers" / f"worker-{busy}")
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    assert "its worker was lost" in out and "1 of 1 points completed" in out, out[-4000:]
    other = 3 - busy
    assert "Running stage 'train@lstm'" in logs[other].read_text()[sizes[other] :]
    # Promoted once, from the attempt that finished.
    client = mlflow.MlflowClient(values["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name='stack-killed'")
    assert len(versions) == 1
    assert client.get_model_version_by_alias("stack-killed", "champion").version == "1"


def test_one_pipeline_run_trains_each_model_on_a_worker(team_stack, tmp_path, tiny_nltk_data):
    """Each model's train/evaluate stages on the pool; the parent restores them and promotes once."""
    import mlflow

    state, values = team_stack
    dvc, remote = str(BIN_DIR / "dvc"), values["GIT_REMOTE_URL"]
    models = ("rnn", "lstm")
    project, env = team_project(values, tmp_path, tiny_nltk_data, "stack-team", models=models)
    commit_and_push(project, env, remote, "space: {}\n", "the team's pipeline")
    deploy = (
        f"from flows.deployments import deploy_pipeline_stages; deploy_pipeline_stages({remote!r})"
    )
    run([sys.executable, "-c", deploy], project, env)
    logs = [state / "logs" / f"worker-{k}.log" for k in (1, 2)]
    sizes = [log.stat().st_size for log in logs]
    team_run = [sys.executable, "-m", "flows.training", "--git-remote", remote]
    team_run += ["--stage-deployment", "pipeline-stages/team"]
    done = run(team_run, project, env, timeout=1200)
    out = done.stdout + done.stderr  # the flow's log on stderr, its summary on stdout

    # Every model trained on a worker, in its clone; here each was restored from the run cache.
    worker_out = "".join(log.read_text()[size:] for log, size in zip(logs, sizes, strict=True))
    for name in models:
        assert f"Running stage 'train@{name}'" in worker_out, worker_out[-3000:]
        assert f"Stage 'train@{name}' is cached - skipping run" in out, out[-3000:]
        assert f"Stage 'evaluate@{name}' is cached - skipping run" in out, out[-3000:]
    assert "Running stage 'train@" not in out and "Running stage 'promote'" in out
    assert "ran here instead" not in out
    # The commit the workers ran is on the git remote; the workspace is reproduced.
    assert "refs/rnnops/runs/" in run(["git", "ls-remote", remote], project, env).stdout
    status = run([dvc, "status"], project, env).stdout
    assert "Data and pipelines are up to date" in status, status
    # One MLflow run per model (trained and evaluated on a worker); promoted once.
    client = mlflow.MlflowClient(values["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reuters-topics")
    runs = [
        client.get_run(run_id)
        for run_id in json.loads(done.stdout[done.stdout.rindex('{\n  "project"') :])["mlflow_runs"]
    ]
    assert sorted(r.data.tags.get("rnnops.model") for r in runs) == sorted(models), exp
    assert all(
        r.info.status == "FINISHED" and any(k.startswith("test_") for k in r.data.metrics)
        for r in runs
    )
    versions = client.search_model_versions("name='stack-team'")
    assert len(versions) == 1
    assert client.get_model_version_by_alias("stack-team", "champion").version == "1"

    # `rnnops serve` loads that champion through the registry, its files from the bucket.
    import httpx

    port = free_port()
    server = start(
        [str(BIN_DIR / "rnnops"), "serve", "--port", str(port), "--model-name", "stack-team"],
        env,
        tmp_path / "serve.log",
        project,
    )
    try:

        def healthy():
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 180, "rnnops serve health", interval=0.5)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"text": ["wheat exports rose"]}
        )
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1, answer.text
        assert "stack-team" in httpx.get(f"http://127.0.0.1:{port}/health").text
    finally:
        stop(server)


def test_postgres_restarted_mid_run_costs_a_retry_not_the_run(team_stack, tmp_path, tiny_nltk_data):
    """The database restarts under both servers while a model trains; the run still finishes."""
    import mlflow

    state, values = team_stack
    project, env = team_project(
        values,
        tmp_path,
        tiny_nltk_data,
        "stack-restart",
        {"epochs": 40, "early_stopping_patience": 40},
    )
    pg_before = json.loads((state / "stack.json").read_text()).get("pg_port")
    pid_before = (state / "postgres" / "data" / "postmaster.pid").read_text().split()[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.training"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 300
        while not any("epoch 2/" in line for line in lines):
            assert proc.poll() is None and time.time() < deadline, "".join(lines)[-3000:]
            time.sleep(0.2)
        restarted = stack("restart-postgres", state)
        assert proc.poll() is None, "training ended before the database restarted"
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    out = "".join(lines)
    pid_after = parse(restarted.stdout)["POSTGRES_PID"]
    assert pid_after and pid_after != pid_before and pg_before
    assert proc.returncode == 0, out[-4000:]
    # Every epoch's metrics reached PostgreSQL through the restart; promoted once.
    client = mlflow.MlflowClient(values["MLFLOW_TRACKING_URI"])
    run_ids = json.loads(out[out.rindex('{\n  "project"') :])["mlflow_runs"]
    (trained,) = [client.get_run(r) for r in run_ids]
    assert trained.info.status == "FINISHED"
    epochs_run = json.loads((project / "models" / "lstm" / "train.json").read_text())["epochs_run"]
    assert len(client.get_metric_history(trained.info.run_id, "loss")) == epochs_run > 2
    assert client.get_model_version_by_alias("stack-restart", "champion").version == "1"


def test_pipeline_on_the_stack(team_stack, tmp_path, tiny_nltk_data):
    import boto3
    import mlflow
    import pandas as pd
    import psycopg2

    state, values = team_stack
    pids_up = stack_pids(state)
    assert pids_up, "no stack process found"

    params = tiny_params()
    params["models"] = {"lstm": params["models"]["lstm"]}
    project, env = make_project(tmp_path / "project", tiny_nltk_data, params)
    s3_env = {k: values[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(
        MLFLOW_TRACKING_URI=values["MLFLOW_TRACKING_URI"],
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        AWS_DEFAULT_REGION=values["AWS_DEFAULT_REGION"],
        **s3_env,
    )
    dvc = str(BIN_DIR / "dvc")
    # What a team member types once: the bucket as the default remote.
    run([dvc, "remote", "add", "-d", "team", values["DVC_REMOTE_URL"]], project, env)
    run([dvc, "remote", "modify", "team", "endpointurl", values["S3_ENDPOINT_URL"]], project, env)
    run([dvc, "repro"], project, env)
    run([dvc, "push"], project, env)

    conn = psycopg2.connect(values["MLFLOW_BACKEND_STORE_URI"].replace("+psycopg2", ""))
    try:
        with conn.cursor() as cur:
            # The LSTM's run (train and evaluate log to the same one) is a row in PostgreSQL.
            cur.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'")
            assert cur.fetchone()[0] >= 1
            cur.execute(
                "SELECT count(*) FROM registered_model_aliases "
                "WHERE alias = 'champion' AND name = 'reuters-topics'"
            )
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()

    s3 = boto3.client(
        "s3",
        endpoint_url=values["S3_ENDPOINT_URL"],
        region_name=values["AWS_DEFAULT_REGION"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
    )

    def keys(prefix: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=values["S3_BUCKET"], Prefix=prefix
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    mlflow_keys = keys("mlflow/")
    assert any(k.endswith("MLmodel") for k in mlflow_keys), mlflow_keys[:20]
    dvc_keys = keys("dvc/")
    assert len(dvc_keys) >= 3, dvc_keys  # the corpus, the processed data, the model...
    status = run([dvc, "status", "--cloud"], project, env)
    assert "Cache and remote 'team' are in sync" in status.stdout, status.stdout

    from rnnops.systems.tracking import load_text_model

    mlflow.set_tracking_uri(values["MLFLOW_TRACKING_URI"])
    model = load_text_model("models:/reuters-topics@champion")
    prediction = model.predict(
        pd.DataFrame({"text": ["grain exports rose as wheat shipments increased"]})
    )
    assert len(prediction) == 1

    stack("down", state)
    assert parse(stack("status", state, check=False).stdout)["STACK"] == "down"
    deadline = time.time() + 15
    while (
        left := {p for p in pids_up | stack_pids(state) if running(p)}
    ) and time.time() < deadline:
        time.sleep(0.5)
    assert not left, f"processes left after stack down: {sorted(left)}"
