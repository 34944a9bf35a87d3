"""A real `dvc repro` in a temporary git repository on the tiny generated corpus."""

import json
import re
import shutil

import pytest
import yaml

from conftest import BIN_DIR, PROJECT_ROOT, run

pytestmark = pytest.mark.integration

DVC = str(BIN_DIR / "dvc")


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def lock(project) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text())


def set_param(project, section: str, name: str, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][name][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_repro_noop_added_ensemble_retrained_member_and_failures(tiny_project):
    """One project through a user's sequence: a first `dvc repro`, a no-op one, an
    ensemble added, a member retrained, an invalid parameter and a missing member."""
    import numpy as np

    from rnnops.core.models import load_model
    from rnnops.stages.preprocess import load_dataset
    from rnnops.systems import tracking

    project, env = tiny_project

    first = run([DVC, "repro"], project, env)
    assert set(ran_stages(first.stdout)) == {
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
    for path in (
        "data/raw/reuters.parquet",
        "data/processed/train.npz",
        "data/processed/vocab.json",
        "data/processed/labels.json",
        "data/processed/stats.json",
        "models/rnn/model.keras",
        "models/rnn/val_scores.npy",
        "models/lstm/history.csv",
        "metrics/lstm.json",
        "reports/eval/lstm/per_class.csv",
        "reports/comparison.md",
        "reports/comparison.html",
        "plots/comparison/learning_curves.png",
        "plots/comparison/per_class_f1.png",
        "plots/comparison/length_buckets.png",
        "plots/lstm/per_class_f1.png",
        "dvc.lock",
    ):
        assert (project / path).exists(), path
    metrics = json.loads((project / "metrics/lstm.json").read_text())
    assert metrics["task"] == "multilabel" and 0.0 <= metrics["micro_f1"] <= 1.0
    assert "model" in first.stdout and "lstm" in first.stdout  # the comparison table
    report = (project / "reports/comparison.md").read_text()
    assert "| rnn | simple_rnn |" in report and "| lstm | lstm |" in report
    assert "tfidf_linear_svm" in report

    second = run([DVC, "repro"], project, env)
    assert ran_stages(second.stdout) == []

    shown = run([DVC, "metrics", "show", "--json"], project, env)
    assert "metrics/rnn.json" in shown.stdout and "metrics/lstm.json" in shown.stdout

    # An ensemble of the two trained models: only the ensemble's stages and the
    # reports that read every model's metrics run.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ensembles"] = {"pair": {"members": ["rnn", "lstm"]}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    added = run([DVC, "repro"], project, env)
    assert sorted(ran_stages(added.stdout)) == [
        "check_params",
        "compare",
        "ensemble@pair",
        "evaluate_ensemble@pair",
        "promote",
    ]
    test = load_dataset(project / "data/processed", "test")
    members = [load_model(project / f"models/{m}/model.keras") for m in ("rnn", "lstm")]
    ensemble = load_model(project / "ensembles/pair/model.keras")
    np.testing.assert_allclose(
        ensemble.predict(test.x, verbose=0),
        np.mean([m.predict(test.x, verbose=0) for m in members], axis=0),
        rtol=1e-5,
        atol=1e-6,
    )
    metrics = json.loads((project / "metrics/pair.json").read_text())
    assert metrics["model"] == "pair" and 0.0 <= metrics["micro_f1"] <= 1.0
    assert "| pair | ensemble |" in (project / "reports/comparison.md").read_text()
    promotion = json.loads((project / "reports/promotion.json").read_text())
    scores = {
        m: json.loads((project / f"metrics/{m}.json").read_text())["validation"][
            promotion["metric"]
        ]
        for m in ("rnn", "lstm", "pair")
    }
    assert promotion["candidate_score"] == pytest.approx(max(scores.values()))

    # The ensemble's MLflow run holds a text-in model that serving can load.
    logged = json.loads((project / "reports/eval/pair/mlflow.json").read_text())
    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    info = client.get_run(logged["run_id"])
    assert info.info.status == "FINISHED" and info.data.tags["rnnops.kind"] == "ensemble"
    assert info.data.params["model.members"] == "rnn,lstm"
    assert info.data.params["data.max_len"] == str(params["preprocess"]["max_len"])
    assert "test_micro_f1" in info.data.metrics
    # This process's MLFLOW_TRACKING_URI may name another test's store: set the URI itself.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        pyfunc = tracking.load_text_model(logged["model_uri"])
    finally:
        mlflow.set_tracking_uri(previous)
    out = pyfunc.predict(pd.DataFrame({"text": ["wheat exports rose", "oil prices fell"]}))
    assert len(out) == 2

    # Retraining one member retrains, re-evaluates and rebuilds only what depends on it.
    set_param(project, "models", "lstm", "units", 5)
    again = run([DVC, "repro"], project, env)
    assert sorted(ran_stages(again.stdout)) == [
        "check_params",
        "compare",
        "ensemble@pair",
        "evaluate@lstm",
        "evaluate_ensemble@pair",
        "promote",
        "train@lstm",
    ]

    before = lock(project)
    set_param(project, "models", "lstm", "kind", "transformer")
    failed = run([DVC, "repro"], project, env, check=False)
    assert failed.returncode != 0
    assert "models.lstm.kind" in failed.stderr + failed.stdout
    assert lock(project) == before
    set_param(project, "models", "lstm", "kind", "lstm")

    # A member that was never trained: exit 2 naming it, nothing written, run FAILED.
    empty = project / "no-models"
    (empty / "rnn").mkdir(parents=True)
    shutil.copy(project / "models/rnn/model.keras", empty / "rnn" / "model.keras")
    out = project / "ensembles" / "broken"
    failed = run(
        [
            str(BIN_DIR / "rnnops"),
            "ensemble",
            "pair",
            "--models",
            str(empty),
            "--data",
            "data/processed",
            "--out",
            str(out),
        ],
        project,
        env,
        check=False,
    )
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert "no trained model for lstm" in failed.stderr and "train@lstm" in failed.stderr
    assert not out.exists() or not any(out.iterdir())
    runs = client.search_runs(
        [client.get_experiment_by_name(params["tracking"]["experiment"]).experiment_id],
        filter_string="tags.`rnnops.stage` = 'ensemble'",
        order_by=["attributes.start_time DESC"],
    )
    assert runs[0].info.status == "FAILED"


def test_plots_overlay_every_model():
    dvc_yaml = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for plot in dvc_yaml["plots"]:
        (spec,) = plot.values()
        assert set(spec["y"]) == {f"models/{name}/history.csv" for name in params["models"]}
