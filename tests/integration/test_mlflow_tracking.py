"""Tracking, lineage, the text-in model and the promotion gate, on a temporary SQLite store."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import BIN_DIR, run

pytestmark = pytest.mark.integration

DVC = str(BIN_DIR / "dvc")
RNNOPS = str(BIN_DIR / "rnnops")


def runs_by_model(client) -> dict:
    exp = client.get_experiment_by_name("reuters-topics")
    return {r.data.tags["rnnops.model"]: r for r in client.search_runs([exp.experiment_id])}


def test_one_run_per_model_with_params_curves_metrics_artifacts(tracked):
    _, _, client = tracked
    runs = runs_by_model(client)
    assert set(runs) == {"rnn", "lstm"}
    lstm = runs["lstm"]
    assert lstm.info.status == "FINISHED"
    params = lstm.data.params
    assert params["model.kind"] == "lstm" and params["model.units"] == "8"
    assert params["data.max_len"] == "40" and params["data.task"] == "multilabel"
    assert {"test_accuracy", "test_micro_f1", "test_macro_f1", "decision_threshold"} <= set(
        lstm.data.metrics
    )
    # What selection read (metrics/lstm.json's validation block) is on the run too.
    project = tracked[0]
    selected = json.loads((project / "metrics/lstm.json").read_text())["validation"]
    assert lstm.data.metrics["validation_macro_f1"] == pytest.approx(selected["macro_f1"])
    assert lstm.data.metrics["validation_micro_f1"] == pytest.approx(selected["micro_f1"])
    # Set up for browsing: the model-training view, descriptions, models by their name.
    experiment = client.get_experiment(lstm.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "validation_*" in experiment.tags["mlflow.note.content"]
    assert "train@lstm" in lstm.data.tags["mlflow.note.content"]
    logged = client.search_logged_models([lstm.info.experiment_id])
    assert {m.name for m in logged} == {"rnn", "lstm"}
    history = client.get_metric_history(lstm.info.run_id, "val_loss")
    assert [m.step for m in history] == [1]
    artifacts = {a.path for a in client.list_artifacts(lstm.info.run_id)}
    assert {"history.csv", "data", "evaluation", "plots"} <= artifacts
    data_files = {a.path for a in client.list_artifacts(lstm.info.run_id, "data")}
    assert {"data/vocab.json", "data/labels.json", "data/stats.json"} <= data_files
    evaluation = {a.path for a in client.list_artifacts(lstm.info.run_id, "evaluation")}
    assert "evaluation/per_class.csv" in evaluation
    plots = {a.path for a in client.list_artifacts(lstm.info.run_id, "plots")}
    assert "plots/per_class_f1.png" in plots


def test_lineage_tags_and_dataset(tracked):
    project, env, client = tracked
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    data_hash = next(
        o["md5"] for o in lock["stages"]["preprocess"]["outs"] if o["path"] == "data/processed"
    )
    commit = run(["git", "rev-parse", "HEAD"], project, env).stdout.strip()
    for r in runs_by_model(client).values():
        tags = r.data.tags
        assert tags["rnnops.git.commit"] == commit
        assert tags["rnnops.git.dirty"] in ("true", "false")
        assert tags["rnnops.data.hash"] == data_hash
        assert tags["rnnops.version"] and tags["rnnops.host"]
        (dataset_input,) = {d.dataset.digest: d for d in r.inputs.dataset_inputs}.values()
        assert dataset_input.dataset.digest == data_hash[:36]


def test_registered_model_takes_raw_text_and_matches_evaluate(tracked):
    project, env, client = tracked
    # Another test may have pointed this process at its own store since the fixture ran.
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("reuters-topics", "champion")
    decision = json.loads((project / "reports/promotion.json").read_text())
    assert decision["decision"] == "champion" and decision["candidate_version"] == str(
        champion.version
    )
    assert champion.tags["promotion.decision"] == "champion"
    card = client.get_model_version("reuters-topics", champion.version).description
    assert "Intended use" in card and "- **macro_f1**: validation " in card
    # Lists, not markdown tables: the registry page renders tables without cell padding.
    assert "|---|" not in card

    name = champion.tags["rnnops.model"]
    model = mlflow.pyfunc.load_model("models:/reuters-topics@champion")
    sig = model.metadata.signature
    assert sig.inputs.input_names() == ["text"]
    assert {"topics", "scores", "top_topic", "top_score", "known_tokens", "oov_rate"} <= set(
        sig.outputs.input_names()
    )

    raw = pd.read_parquet(project / "data/raw/reuters.parquet").set_index("doc_id")
    expected = pd.read_csv(project / f"reports/eval/{name}/predictions.csv", keep_default_na=False)
    docs = raw.loc[expected["doc_id"]]
    texts = [f"{t}\n{x}" if x else t for t, x in zip(docs["title"], docs["text"], strict=True)]
    got = model.predict(pd.DataFrame({"text": texts}))
    assert [";".join(sorted(t)) for t in got["topics"]] == [
        ";".join(sorted(p.split(";"))) for p in expected["predicted"]
    ]
    np.testing.assert_allclose(got["top_score"], expected["score"], atol=1e-5)


def test_promotion_refuses_missing_evaluation(tracked, tmp_path):
    project, env, client = tracked
    versions = len(client.search_model_versions("name='reuters-topics'"))
    (tmp_path / "metrics").mkdir()
    proc = run(
        [
            RNNOPS,
            "promote",
            "--metrics",
            str(tmp_path / "metrics"),
            "--evaluations",
            "reports/eval",
            "--data",
            "data/processed",
            "--raw",
            "data/raw/reuters.parquet",
            "--out",
            str(tmp_path / "promotion.json"),
        ],
        project,
        env,
        check=False,
    )
    assert proc.returncode == 2 and "no promotion" in proc.stderr
    assert not (tmp_path / "promotion.json").exists()
    assert len(client.search_model_versions("name='reuters-topics'")) == versions


def test_reproduce_a_run_from_its_lineage(tracked):
    project, env, client = tracked
    exp = client.get_experiment_by_name("reuters-topics")
    (original,) = client.search_runs(
        [exp.experiment_id], "attributes.status = 'FINISHED' and tags.`rnnops.model` = 'lstm'"
    )
    proc = run([RNNOPS, "reproduce", "--run-id", original.info.run_id], project, env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "metrics match" in proc.stdout
    assert "macro_f1" in proc.stdout
    worktrees = run(["git", "worktree", "list"], project, env).stdout.strip().splitlines()
    assert len(worktrees) == 1
    reproduced = client.search_runs(
        [exp.experiment_id], f"tags.`rnnops.reproduces` = '{original.info.run_id}'"
    )
    assert len(reproduced) == 1 and reproduced[0].info.status == "FINISHED"
