"""Faults in the pipeline and its data (issue items 15-23).

Every test works on a copy of the session's tiny champion project (one `dvc repro`
per session), so no test pays for a full pipeline run of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

import mlflow
import numpy as np
import pytest
import yaml

from conftest import (
    BIN_DIR,
    copy_project,
    project_env,
    run,
    set_params,
    start,
    tiny_champion,
    tiny_params,
    wait_for,
)
from integration.test_prefect_flows import flow_logs, task_runs, task_states
from rnnops.testing.corpus import write_tiny_reuters
from unit.test_pipeline import hold_workspace

pytestmark = pytest.mark.integration

DVC = str(BIN_DIR / "dvc")


@pytest.fixture
def project(tmp_path_factory, tiny_nltk_data, tmp_path):
    """A private copy of the tiny champion project, logging to its own MLflow store."""
    src, env, _ = tiny_champion(tmp_path_factory, tiny_nltk_data)
    dest = copy_project(src, tmp_path / "project")
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    return dest, env


def lock_entry(project, stage: str) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]


def cache_files(project) -> set[str]:
    return {str(p) for p in (project / ".dvc" / "cache").rglob("*") if p.is_file()}


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


# --------------------------------------------------------------------------- 15


def test_15_stage_killed_mid_write_is_not_cached_and_is_recomputed(project, tmp_path):
    """Item 15: `kill -9` of a running stage -> nothing cached, dvc.lock unchanged, rerun computes."""
    project, env = project
    set_params(project, {"models.lstm.epochs": 40, "models.lstm.early_stopping_patience": 0})
    lock_before, cache_before = lock_entry(project, "train@lstm"), cache_files(project)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    proc = start([DVC, "repro", "train@lstm"], env, tmp_path / "repro.log", cwd=project)
    try:

        def training():
            exp = client.get_experiment_by_name("reuters-topics")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            return runs and client.get_metric_history(runs[0].info.run_id, "loss")

        wait_for(training, 120, "train@lstm to log an epoch", interval=0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage: nothing can clean up
        proc.wait()
    assert lock_entry(project, "train@lstm") == lock_before
    assert cache_files(project) == cache_before
    assert not (project / "models/lstm/model.keras").exists()
    rwlock = json.loads((project / ".dvc/tmp/rwlock").read_text())
    assert any(v["pid"] == proc.pid for v in rwlock["write"].values())  # left by the dead dvc

    status = run([DVC, "status", "train@lstm"], project, env).stdout
    assert "train@lstm" in status and "deleted" in status
    again = run([DVC, "repro", "train@lstm"], project, env)
    assert ran_stages(again.stdout) == ["train@lstm"]
    assert (project / "models/lstm/model.keras").exists()
    assert lock_entry(project, "train@lstm") != lock_before
    assert cache_files(project) > cache_before


# --------------------------------------------------------------------------- 16


def test_16_later_stage_fails_nothing_registered_rerun_rebuilds_only_what_failed(project):
    """Item 16: evaluate succeeds, promote fails -> nothing registered; the rerun runs promote only."""
    project, env = project
    set_params(project, {"evaluate.at_least_one": False, "promotion.registered_model": "bad/name"})
    failed = run([DVC, "repro"], project, env, check=False)
    assert failed.returncode != 0
    assert "evaluate@lstm" in ran_stages(failed.stdout)
    assert "Invalid model name" in failed.stdout + failed.stderr
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert client.search_registered_models() == []
    assert not (project / "reports/promotion.json").exists()

    set_params(project, {"promotion.registered_model": "reuters-topics"})
    rerun = run([DVC, "repro"], project, env)
    stages = ran_stages(rerun.stdout)
    assert "promote" in stages
    assert not {"ingest", "preprocess", "train@lstm", "evaluate@lstm"} & set(stages)
    assert client.get_model_version_by_alias("reuters-topics", "champion")


# --------------------------------------------------------------------------- 18


def test_18_kill_9_leaves_stale_or_corrupt_dvc_locks_and_the_next_run_recovers(
    prefect_harness, project, monkeypatch
):
    """Item 18: after `kill -9` of dvc, stale lock entries and a corrupt lock file are handled.

    (Killing `dvc repro` itself is item 15's test.)
    """
    from flows.training import training_flow

    from rnnops.systems import dvc_driver

    project, env = project
    for key in ("NLTK_DATA", "PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    dead = subprocess.Popen(["true"])
    dead.wait()
    target = str(project / "models/lstm/model.keras")
    rwlock = project / ".dvc/tmp/rwlock"
    rwlock.write_text(json.dumps({"write": {target: {"pid": dead.pid, "cmd": "dvc repro"}}}))
    status = run([DVC, "status"], project, env)
    assert "had been killed" in status.stdout + status.stderr  # DVC drops dead holders itself

    rwlock.write_text('{"write": {"' + target)  # killed while DVC wrote its lock file
    with pytest.raises(dvc_driver.CorruptLockError, match=r"rm \.dvc/tmp/rwlock"):
        dvc_driver.changed_stages(project)
    start_ = time.monotonic()
    state = training_flow(project_dir=str(project), return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["noop"] is True
    assert time.monotonic() - start_ < 120
    assert list(rwlock.parent.glob("rwlock.corrupt-*"))  # moved aside
    assert not rwlock.exists() or json.loads(rwlock.read_text() or "{}") is not None


# --------------------------------------------------------------------------- 19


def test_19_corrupt_object_in_the_remote_is_refused_and_the_flow_does_not_train(
    prefect_harness, project, monkeypatch
):
    """Item 19: a corrupted object in the DVC remote -> pull fails (verify on), no stage runs."""
    from flows.training import training_flow

    project, env = project
    for key in ("NLTK_DATA", "PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    assert "verify = true" in (project / ".dvc/config").read_text()
    run([DVC, "push"], project, env)
    md5 = lock_entry(project, "ingest")["outs"][0]["md5"]
    obj = project / ".dvcstore/files/md5" / md5[:2] / md5[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"corrupted in the remote")
    shutil.rmtree(project / ".dvc/cache")
    shutil.rmtree(project / "data")

    state = training_flow(project_dir=str(project), pull=True, retries=0, return_state=True)
    assert state.is_failed()
    assert "hash check" in state.message and "data/raw/reuters.parquet" in state.message
    assert not (project / "data/raw/reuters.parquet").exists()
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reuters-topics")
    assert exp is None or client.search_runs([exp.experiment_id]) == []


# --------------------------------------------------------------------------- 20


def test_20_same_path_changed_contents_recomputes_downstream(project):
    """Item 20: a dependency rewritten in place (same path, new contents) -> its stages rerun.

    DVC keys stages on content hashes, not paths or mtimes: the same bytes rewritten
    change nothing; different bytes at the same path rerun the stage and what follows.
    """
    project, env = project
    code = project / "src/rnnops/stages/baseline.py"
    code.write_bytes(code.read_bytes())  # same contents, new mtime
    assert run([DVC, "status", "--json"], project, env).stdout.strip() in ("{}", "")
    code.write_text(code.read_text() + "\n# changed contents\n")
    status = json.loads(run([DVC, "status", "--json"], project, env).stdout)
    assert set(status) == {"compare"}
    raw = project / "data/processed/vocab.json"
    vocab = json.loads(raw.read_text())
    vocab["tokens"] = vocab["tokens"][:-1]
    raw.write_text(json.dumps(vocab))
    status = json.loads(run([DVC, "status", "--json"], project, env).stdout)
    assert {"preprocess", "train@lstm", "evaluate@lstm", "promote", "compare"} <= set(status)


# --------------------------------------------------------------------------- 23


def _corrupt_bytes(reuters):
    doc = reuters / "training/3"
    lines = doc.read_bytes().split(b"\n")
    lines[1] += " caf\u00e9 \u2019quoted\u2019".encode()  # UTF-8 in an ISO-8859-2 corpus
    doc.write_bytes(b"\n".join(lines))
    return "training/3, line 2: byte 0x80 is not text in the corpus encoding (ISO-8859-2)"


def _empty_document(reuters):
    (reuters / "test/50").write_bytes(b"")
    return "1 document(s) with empty text: test/50"


def _line_without_topics(reuters):
    cats = reuters / "cats.txt"
    lines = cats.read_text().splitlines()
    assert lines[4].startswith("training/5 ")
    lines[4] = "training/5"
    cats.write_text("\n".join(lines) + "\n")
    return "cats.txt, line 5: 'training/5' has no topics"


def test_23_malformed_corpus_files_fail_naming_file_and_line_nothing_written(tmp_path):
    """Item 23: non-text bytes, an empty document (empty_texts: error), a label line
    without topics -> `rnnops ingest` exits 2 naming the file (and line); nothing is written."""
    params = tiny_params({"ingest.nltk_reuters.empty_texts": "error"})
    for corrupt in (_corrupt_bytes, _empty_document, _line_without_topics):
        work = tmp_path / corrupt.__name__.strip("_")
        nltk_data = write_tiny_reuters(work / "nltk_data")
        needle = corrupt(nltk_data / "corpora/reuters")
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        out = work / "data/raw/reuters.parquet"
        proc = run(
            [str(BIN_DIR / "rnnops"), "ingest", "--out", str(out)],
            work,
            project_env(nltk_data),
            check=False,
            timeout=120,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, output
        assert needle in output, output
        assert str(nltk_data / "corpora/reuters") in output, output
        assert "Traceback" not in output, output
        assert not out.exists() and not (work / "data").exists()


# --------------------------------------------------------------------------- 16, 17 (flows)


def test_16_failing_stage_fails_the_flow_and_stops_later_stages(prefect_harness, flow_project):
    """Item 16 (and 1): a stage fails -> the flow is Failed, later stages never run."""
    from flows.training import training_flow

    project, _ = flow_project
    # Valid params, but a topic the corpus does not have: preprocess rejects it.
    set_params(project, {"preprocess.label_set": "list", "preprocess.topics": ["grain", "cocoa"]})
    state = training_flow(project_dir=str(project), retry_delay_seconds=0.1, return_state=True)
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    runs = task_runs(flow_run_id, expect=3)
    assert {n: r.state.type.value for n, r in runs.items()} == {
        "check_params": "COMPLETED",
        "ingest": "COMPLETED",
        "preprocess": "FAILED",
    }
    logs = flow_logs(flow_run_id, "have no training documents")
    assert "cocoa" in logs and "have no training documents" in logs
    # Bad input is not retried: preprocess ran exactly once.
    assert runs["preprocess"].run_count == 1


def test_17_overlapping_workspace_runs_fail_fast_as_busy(prefect_harness, flow_project):
    """Item 17: a second pipeline run in the same workspace fails at once as busy."""
    from flows.training import training_flow

    from unit.test_pipeline import hold_workspace

    project, _ = flow_project
    holder = hold_workspace(project)
    try:
        start = time.time()
        state = training_flow(project_dir=str(project), return_state=True)
        assert state.is_failed() and "busy" in state.message
        assert time.time() - start < 60
        assert task_states(state.state_details.flow_run_id) == {}
    finally:
        holder.kill()
        holder.wait()


def test_17_workspace_lock_fails_fast_while_another_process_holds_it(tmp_path):
    """Item 17: the workspace lock never waits: busy at once, free again when the holder goes."""
    from rnnops.systems.dvc_driver import RepositoryBusyError, workspace_lock

    holder = hold_workspace(tmp_path)
    try:
        start_ = time.perf_counter()
        with pytest.raises(RepositoryBusyError, match="busy") as info, workspace_lock(tmp_path):
            pass
        assert time.perf_counter() - start_ < 2
        assert f"pid {holder.pid}" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    with workspace_lock(tmp_path):
        pass


# --------------------------------------------------------------------------- 22


def toy(n=64, max_len=6, vocab=12, n_labels=3, seed=0):
    from rnnops.stages.preprocess import Dataset

    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_labels, size=n).astype(np.int32)
    x = rng.integers(2, vocab, size=(n, max_len)).astype(np.int32)
    x[:, 0] = y + 2
    ids = np.array([f"d{i}" for i in range(n)])
    return Dataset(x=x, y=y, doc_ids=ids, lengths=np.full(n, max_len))


def weights_of(seed):
    from rnnops.core.config import ModelConfig
    from rnnops.stages.train import train_model

    cfg = ModelConfig(
        kind="gru", units=4, embedding_dim=4, epochs=2, batch_size=16,
        early_stopping_patience=0, seed=seed,
    )  # fmt: skip
    data = toy()
    model, history, _ = train_model(cfg, data, data, "singlelabel", 12, 3)
    return model.get_weights(), history


def test_22_same_seed_same_weights_different_seed_different_weights():
    """Item 22: same seed twice -> identical weights; a different seed -> different weights."""
    a, ha = weights_of(1)
    b, hb = weights_of(1)
    c, _ = weights_of(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert ha["loss"].tolist() == hb["loss"].tolist()
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
