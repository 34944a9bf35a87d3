"""Faults in tracking and the registry (issue items 1-9): nothing is lost, no wrong model wins.

Runs that must not touch the shared stores log into their own SQLite store or their
own `mlflow server`; the shared tiny projects (conftest ``tracked``, ``champion``) are
only read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import mlflow
import pytest
import yaml

from conftest import BIN_DIR, free_port, run, start_mlflow_server, stop, tiny_params, wait_for

pytestmark = pytest.mark.integration

RNNOPS = str(BIN_DIR / "rnnops")
EXPERIMENT = "reuters-topics"


def long_training_params(tmp_path, **extra) -> str:
    """Params under which train@lstm runs long enough to be interrupted."""
    path = tmp_path / "params.yaml"
    values = {"models.lstm.epochs": 500, "models.lstm.early_stopping_patience": 0, **extra}
    path.write_text(yaml.safe_dump(tiny_params(values)))
    return str(path)


def train_cmd(params: str, out) -> list[str]:
    return [
        RNNOPS,
        "--params",
        params,
        "train",
        "lstm",
        "--data",
        "data/processed",
        "--pretrained",
        "data/pretrained",
        "--out",
        str(out),
    ]


def wait_for_epochs(client, timeout: float = 120):
    """The RUNNING run once it has logged at least one epoch."""

    def logging():
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            return None
        for r in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'"):
            if client.get_metric_history(r.info.run_id, "loss"):
                return r
        return None

    return wait_for(logging, timeout, "training to log an epoch", interval=0.3)


def http_env(env: dict, **extra: str) -> dict:
    """The project's own bounded MLflow HTTP defaults apply: drop any the caller set."""
    clean = {k: v for k, v in env.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    return {**clean, **extra}


# --------------------------------------------------------------------------- 1, 2


def test_01_exception_in_training_fails_the_run_registers_nothing_champion_unchanged(
    tracked, tmp_path
):
    """Item 1: an exception in training -> the run FAILED, no version, champion unchanged.

    (The flow side, Failed with later stages not run, is item 16's flow test.)
    """
    project, env, client = tracked
    versions_before = len(client.search_model_versions("name='reuters-topics'"))
    champion_before = client.get_model_version_by_alias("reuters-topics", "champion").version
    exp = client.get_experiment_by_name(EXPERIMENT)
    failed_before = {
        r.info.run_id
        for r in client.search_runs([exp.experiment_id], "attributes.status = 'FAILED'")
    }
    broken = tmp_path / "processed"
    run(["cp", "-r", str(project / "data/processed"), str(broken)], project, env)
    labels = json.loads((broken / "labels.json").read_text())
    labels["labels"] = labels["labels"][:2]  # targets no longer fit the output layer
    (broken / "labels.json").write_text(json.dumps(labels))
    proc = run(
        [
            RNNOPS,
            "train",
            "lstm",
            "--data",
            str(broken),
            "--pretrained",
            "data/pretrained",
            "--out",
            str(tmp_path / "out"),
        ],
        project,
        env,
        check=False,
    )
    assert proc.returncode == 1 and "error" in proc.stderr
    assert not (tmp_path / "out" / "model.keras").exists()
    failed = [
        r
        for r in client.search_runs([exp.experiment_id], "attributes.status = 'FAILED'")
        if r.info.run_id not in failed_before
    ]
    assert len(failed) == 1 and failed[0].data.tags["rnnops.model"] == "lstm"
    assert len(client.search_model_versions("name='reuters-topics'")) == versions_before
    assert client.get_model_version_by_alias("reuters-topics", "champion").version == (
        champion_before
    )


def test_02_sigterm_ends_the_run_killed_never_running(tracked, tmp_path):
    """Item 2: SIGTERM to a running stage -> its MLflow run ends KILLED (exit 143)."""
    project, env, client = tracked
    proc = subprocess.Popen(
        train_cmd(long_training_params(tmp_path), tmp_path / "out"),
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = wait_for_epochs(client)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    assert client.get_run(running.info.run_id).info.status == "KILLED"
    assert not (tmp_path / "out" / "model.keras").exists()


# --------------------------------------------------------------------------- 3


def test_03_doctor_marks_runs_of_sigkilled_processes_killed(tracked, tmp_path):
    """Item 3: SIGKILL leaves a run RUNNING; `rnnops doctor` marks it KILLED.

    Runs of live processes and of other hosts are left alone; a pid reused by another
    process (different start time) counts as dead.
    """
    from rnnops.systems.tracking import process_tags

    project, env, _ = tracked
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**env, "MLFLOW_TRACKING_URI": uri}
    client = mlflow.MlflowClient(uri)
    proc = subprocess.Popen(
        train_cmd(long_training_params(tmp_path), tmp_path / "out"),
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        killed = wait_for_epochs(client)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert client.get_run(killed.info.run_id).info.status == "RUNNING"  # nothing cleaned up
    assert killed.data.tags["rnnops.pid"] == str(proc.pid)

    exp_id = killed.info.experiment_id
    live = client.create_run(exp_id, run_name="live", tags=process_tags())
    elsewhere = client.create_run(
        exp_id, run_name="elsewhere", tags={**process_tags(), "rnnops.host": "another-host"}
    )
    reused = client.create_run(
        exp_id, run_name="reused", tags={**process_tags(), "rnnops.pid_started": "12345.00"}
    )

    dry = run([RNNOPS, "doctor", "--dry-run"], project, env)
    assert "would mark" in dry.stdout
    assert client.get_run(killed.info.run_id).info.status == "RUNNING"

    out = run([RNNOPS, "doctor"], project, env)
    assert killed.info.run_id in out.stdout and "2 run(s)" in out.stdout, out.stdout
    after = client.get_run(killed.info.run_id)
    assert after.info.status == "KILLED"
    assert f"process {proc.pid}" in after.data.tags["rnnops.doctor"]
    assert client.get_run(reused.info.run_id).info.status == "KILLED"
    assert "another process" in client.get_run(reused.info.run_id).data.tags["rnnops.doctor"]
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"
    again = run([RNNOPS, "doctor"], project, env)
    assert "nothing to do" in again.stdout


# --------------------------------------------------------------------------- 4


def test_04_mlflow_server_stopped_mid_training_fails_fast_and_promotes_nothing(champion, tmp_path):
    """Item 4: the tracking server stops mid-training -> the stage fails within a bound.

    The project bounds MLflow's HTTP retries (its defaults retry for minutes); the run,
    which could not be ended while the server was down, is marked KILLED by the doctor
    once the server is back; nothing is registered.
    """
    project, env, _, _, _ = champion
    base, port = tmp_path / "server", free_port()
    server, url = start_mlflow_server(base, port)
    trainer = None
    try:
        client = mlflow.MlflowClient(url)
        trainer = subprocess.Popen(
            train_cmd(long_training_params(tmp_path), tmp_path / "out"),
            cwd=project,
            env=http_env(env, MLFLOW_TRACKING_URI=url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running = wait_for_epochs(client)
        stop(server)
        stopped = time.monotonic()
        _, stderr = trainer.communicate(timeout=120)
        elapsed = time.monotonic() - stopped
        assert trainer.returncode == 1, stderr
        assert elapsed < 60, f"the stage took {elapsed:.0f}s to notice the server was gone"
        assert "rnnops train: error" in stderr
        assert not (tmp_path / "out" / "model.keras").exists()

        server, url = start_mlflow_server(base, port)
        assert client.get_run(running.info.run_id).info.status in ("RUNNING", "FAILED")
        run([RNNOPS, "doctor"], project, http_env(env, MLFLOW_TRACKING_URI=url))
        assert client.get_run(running.info.run_id).info.status in ("KILLED", "FAILED")
        assert client.search_registered_models() == []
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        stop(server)


# --------------------------------------------------------------------------- 5

FIRST_USE = """
import sys
from rnnops.systems import tracking
tracking.configure(None, "first-use")
with tracking.stage_run(run_name=sys.argv[1]):
    tracking.log_metrics({"x": 1.0}, step=1)
"""


def test_05_concurrent_first_use_of_a_fresh_sqlite_store(tmp_path):
    """Item 5: several processes open a fresh SQLite store at once -> created once, all finish."""
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    (tmp_path / "fresh").mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE, f"p{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [(p, *p.communicate(timeout=180)) for p in procs]
    assert [p.returncode for p, _, _ in results] == [0] * 4, [e[-2000:] for _, _, e in results]
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("first-use")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["p0", "p1", "p2", "p3"]
    assert {r.info.status for r in runs} == {"FINISHED"}


# --------------------------------------------------------------------------- 6

HOLD_LOCK = """
import sqlite3, sys, time
db, key, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
conn = sqlite3.connect(db, timeout=60, isolation_level=None)
deadline = time.time() + 180
row = None
while row is None and time.time() < deadline:
    try:
        row = conn.execute(
            "SELECT run_uuid FROM tags WHERE key = 'rnnops.stage_execution' AND value = ?", (key,)
        ).fetchone()
    except sqlite3.OperationalError:
        pass
    time.sleep(0.01)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(hold)
conn.execute("COMMIT")
print("released", flush=True)
"""


def test_06_sqlite_write_lock_held_40s_bounded_error_retry_reuses_the_run(champion, tmp_path):
    """Item 6: another process holds the SQLite write lock for 40 s.

    The stage fails with a bounded error (MLflow's 20 s busy timeout), the retry of the
    same stage execution succeeds, and there is exactly one MLflow run for it. The hold
    outlasts the busy timeout by 20 s: on a loaded machine the stage's next write can come
    several seconds after the lock is taken, and must still meet a held lock for 20 s.
    """
    project, env, _, _, _ = champion
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    mlflow.MlflowClient(uri).search_experiments()  # the store exists before the holder polls it
    execution = "task-run-0001"
    env = {**env, "MLFLOW_TRACKING_URI": uri, "RNNOPS_STAGE_EXECUTION": execution}
    key = f"{execution}/train@lstm"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params({"models.lstm.epochs": 2})))
    cmd = train_cmd(str(params), tmp_path / "out")

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db), key, "40"], stdout=subprocess.PIPE, text=True
    )
    trainer = subprocess.Popen(
        cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        locked = time.monotonic()
        _, stderr = trainer.communicate(timeout=120)
        elapsed = time.monotonic() - locked
        assert trainer.returncode == 1, stderr
        assert "database is locked" in stderr
        assert elapsed < 60, f"the stage waited {elapsed:.0f}s on the lock"
        assert holder.stdout.readline().strip() == "released"
    finally:
        for proc in (holder, trainer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    retry = run(cmd, project, env, check=False)  # what the flow's task retry runs
    assert retry.returncode == 0, retry.stderr[-3000:]
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["rnnops.stage_execution"] == key
    assert json.loads((tmp_path / "out" / "train.json").read_text())["mlflow_run_id"] == (
        runs[0].info.run_id
    )


# --------------------------------------------------------------------------- 7, 8


def test_07_concurrent_promotions_let_the_better_model_win(tracked, tmp_path):
    """Item 7: two promotions at once, a better and a worse candidate -> the better is champion."""
    project, env, client = tracked
    name = "race-model"
    inputs = {}
    for label, model, score in (("better", "lstm", 0.9), ("worse", "rnn", 0.2)):
        d = tmp_path / label
        (d / "metrics").mkdir(parents=True)
        (d / "eval").mkdir()
        metrics = json.loads((project / f"metrics/{model}.json").read_text())
        metrics["validation"]["macro_f1"] = score
        (d / "metrics" / f"{model}.json").write_text(json.dumps(metrics))
        run(
            ["cp", "-r", str(project / f"reports/eval/{model}"), str(d / "eval" / model)],
            project,
            env,
        )
        params = tiny_params({"promotion.registered_model": name})
        params["models"] = {model: params["models"][model]}
        (d / "params.yaml").write_text(yaml.safe_dump(params))
        inputs[label] = d

    def promote(d, results):
        results[d.name] = run(
            [
                RNNOPS,
                "--params",
                str(d / "params.yaml"),
                "promote",
                "--metrics",
                str(d / "metrics"),
                "--evaluations",
                str(d / "eval"),
                "--data",
                "data/processed",
                "--raw",
                "data/raw/reuters.parquet",
                "--out",
                str(d / "promotion.json"),
            ],
            project,
            env,
            check=False,
        )

    results = {}
    threads = [
        threading.Thread(target=promote, args=(inputs[k], results)) for k in ("worse", "better")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(r.returncode == 0 for r in results.values()), {
        k: r.stderr for k, r in results.items()
    }
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags["rnnops.model"] == "lstm"
    assert float(champion.tags["selection.macro_f1"]) == 0.9
    challengers = [
        json.loads((d / "promotion.json").read_text())["decision"] for d in inputs.values()
    ]
    assert sorted(challengers) in (["champion", "champion"], ["challenger", "champion"])


def test_08_promotion_to_missing_version_or_reserved_alias_is_refused(tracked):
    """Item 8: a missing version or a reserved alias -> a clear error, aliases unchanged."""
    from rnnops.systems import tracking

    _, _, client = tracked
    mlflow.set_tracking_uri(client.tracking_uri)
    before = client.get_registered_model("reuters-topics").aliases
    with pytest.raises(tracking.TrackingError, match="no version 999; nothing was changed"):
        tracking.set_alias("reuters-topics", "champion", "999")
    for alias in ("latest", "v1"):
        with pytest.raises(tracking.TrackingError, match="reserved by MLflow"):
            tracking.set_alias("reuters-topics", alias, "1")
    assert client.get_registered_model("reuters-topics").aliases == before


# --------------------------------------------------------------------------- 9

POISONED_TRAIN = """
import sys
import keras
import numpy as np
from rnnops.systems import tracking
from rnnops.apps.cli import main

class PoisonWeights(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        emb = self.model.get_layer("embedding")
        emb.set_weights([np.full_like(w, np.nan) for w in emb.get_weights()])


tracking.epoch_logger = PoisonWeights
sys.exit(main(sys.argv[1:]))
"""


def test_09_non_finite_loss_fails_the_stage_logs_no_model_registers_nothing(champion, tmp_path):
    """Item 9: a NaN loss -> the stage fails (exit 2), its run FAILED, no model, no version."""
    project, env, _, _, _ = champion
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params({"models.lstm.epochs": 3})))
    proc = run(
        [sys.executable, "-c", POISONED_TRAIN, *train_cmd(str(params), tmp_path / "out")[1:]],
        project,
        {**env, "MLFLOW_TRACKING_URI": uri},
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "non-finite" in proc.stderr
    assert not (tmp_path / "out" / "model.keras").exists()
    client = mlflow.MlflowClient(uri)
    (failed,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert failed.info.status == "FAILED"
    assert "model" not in {a.path for a in client.list_artifacts(failed.info.run_id)}
    assert client.search_logged_models([failed.info.experiment_id]) == []
    assert client.search_registered_models() == []
