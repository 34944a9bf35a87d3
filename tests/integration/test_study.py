"""A two-cell study on the tiny corpus, end to end, then rerun: nothing is retrained."""

import json

import mlflow
import pytest
import yaml

from conftest import make_project, run, tiny_params

pytestmark = pytest.mark.integration

EXPERIMENT = "reuters-topics"

TINY_STUDY = {
    "name": "tiny",
    "tasks": {"topics": {"task": "multilabel", "label_set": "all"}},
    "seeds": [42],
    "recipe": "lstm",
    "cells": {"srnn": {"kind": "simple_rnn"}, "lstm": {"kind": "lstm"}},
    "with_skip": False,
    "skip": ["max", "mean"],
    "probes": {"late": {"preprocess": {"truncating": "pre"}, "cells": ["lstm"]}},
}


@pytest.fixture
def study_project(tmp_path, tiny_nltk_data, monkeypatch):
    project, env = make_project(tmp_path / "project", tiny_nltk_data, tiny_params())
    (project / "study.yaml").write_text(yaml.safe_dump(TINY_STUDY, sort_keys=False))
    run(["git", "add", "study.yaml"], project, env)
    run(["git", "commit", "-qm", "study"], project, env)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key in ("NLTK_DATA", "PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    return project, env


def child_runs(client, study_id):
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`rnnops.sweep_id` = '{study_id}'")
    return [r for r in runs if r.data.tags.get("rnnops.sweep_role") != "parent"]


def experiment_refs(project, env) -> list[str]:
    out = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], project, env).stdout
    return sorted(out.split())


def test_a_two_cell_study_runs_end_to_end_and_a_rerun_retrains_nothing(
    prefect_harness, study_project
):
    from flows.study import study_flow

    project, env = study_project
    state = study_flow("study.yaml", project_dir=str(project), return_state=True)
    assert state.is_completed(), state
    first = state.result()
    assert first["failed"] == []
    # Two points: the cells on the standard data, and the late probe (lstm and boe only).
    assert len(first["points"]) == 2
    assert all(p["status"] == "completed" and not p.get("reused") for p in first["points"])
    assert first["rows"] == 3 + 2  # srnn, lstm, boe; then lstm and boe under the probe

    results = json.loads((project / "reports" / "study" / "results.json").read_text())
    rows = results["rows"]
    assert {(r["probe"], r["model"]) for r in rows} == {
        ("standard", "srnn"),
        ("standard", "lstm"),
        ("standard", "boe"),
        ("late", "lstm"),
        ("late", "boe"),
    }
    boe = next(r for r in rows if r["model"] == "boe")
    assert boe["recurrent_weights"] == 0 and boe["layers"] == 0
    assert all(len(r["quartiles"]) >= 1 for r in rows)
    assert set(results["baselines"]) == {"topics"}
    markdown = (project / "reports" / "study.md").read_text()
    assert "## Answers" in markdown and "one seed" in markdown
    assert "`lstm`" in markdown and "TF-IDF + linear SVM" in markdown
    html = (project / "reports" / "study.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(first["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["rnnops.study_id"] == first["study_id"]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/study.md", "study/study.html", "study/results.json"} <= logged
    children = child_runs(client, first["study_id"])
    assert children and {r.data.tags["mlflow.parentRunId"] for r in children} == {
        parent.info.run_id
    }
    refs = experiment_refs(project, env)
    assert len(refs) == 2

    # The rerun reads both points back: no experiment, no MLflow run, the same numbers.
    state = study_flow("study.yaml", project_dir=str(project), return_state=True)
    assert state.is_completed(), state
    second = state.result()
    assert second["study_id"] == first["study_id"]
    assert second["parent_run_id"] == first["parent_run_id"]
    assert all(p["status"] == "completed" and p.get("reused") for p in second["points"])
    assert experiment_refs(project, env) == refs
    assert len(child_runs(client, first["study_id"])) == len(children)
    again = json.loads((project / "reports" / "study" / "results.json").read_text())["rows"]
    assert [(r["model"], r["micro_f1"]) for r in again] == [
        (r["model"], r["micro_f1"]) for r in rows
    ]
    assert client.get_run(first["parent_run_id"]).info.status == "FINISHED"
