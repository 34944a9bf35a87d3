"""A real `dvc repro` in a temporary git repository on the tiny generated corpus."""

import json
import re

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


def test_repro_then_noop_then_targeted_rerun_then_failure(tiny_project):
    project, env = tiny_project

    first = run([DVC, "repro"], project, env)
    assert set(ran_stages(first.stdout)) == {
        "ingest",
        "preprocess",
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

    set_param(project, "models", "lstm", "units", 5)
    third = run([DVC, "repro"], project, env)
    assert sorted(ran_stages(third.stdout)) == ["compare", "evaluate@lstm", "promote", "train@lstm"]

    before = lock(project)
    set_param(project, "models", "lstm", "kind", "transformer")
    failed = run([DVC, "repro"], project, env, check=False)
    assert failed.returncode != 0
    assert "models.lstm.kind" in failed.stderr + failed.stdout
    assert lock(project) == before


def test_plots_overlay_every_model():
    dvc_yaml = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for plot in dvc_yaml["plots"]:
        (spec,) = plot.values()
        assert set(spec["y"]) == {f"models/{name}/history.csv" for name in params["models"]}
