"""The team stack of scripts/stack.py: a pipeline run against PostgreSQL, S3 and the servers.

One `dvc repro` on the tiny corpus (LSTM only) logs to the stack's `mlflow server`; its runs
must be rows in PostgreSQL, its artifacts objects in the bucket, its DVC outputs pushed to the
bucket remote, and its champion loadable from the registry. Then the stack stops, leaving no
process behind.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BIN_DIR, PROJECT_ROOT, make_project, run, tiny_params

pytestmark = [
    pytest.mark.integration,
    pytest.mark.stack,
    pytest.mark.skipif(
        not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) and not shutil.which("pg_ctl"),
        reason="PostgreSQL is not installed (apt-get install postgresql; .ci/run does)",
    ),
]
STACK = [sys.executable, str(PROJECT_ROOT / "scripts" / "stack.py")]


def stack(command: str, state: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
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
    import json

    info = json.loads((state / "stack.json").read_text())
    ports = {str(info[k]) for k in ("pg_port", "s3_port", "mlflow_port", "prefect_port")}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args]
        line = " ".join(words)
        if str(state) in line or (ports & set(words) and "127.0.0.1" in line):
            found.add(int(entry.name))
    return found


@pytest.fixture(scope="session")
def team_stack():
    # PostgreSQL runs as the 'postgres' user when tests run as root, and that user must
    # reach the cluster's directory: pytest's tmp dirs are private to their owner.
    state = Path(tempfile.mkdtemp(prefix="rnnops-stack-"))
    state.chmod(0o755)
    try:
        values = parse(stack("up", state).stdout)
        assert values["STACK"] == "up", values
        yield state, values
    finally:
        stack("down", state, check=False)
        shutil.rmtree(state, ignore_errors=True)


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
            cur.execute("SELECT count(*) FROM registered_model_aliases WHERE alias = 'champion'")
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
