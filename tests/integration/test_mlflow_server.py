"""The tiny pipeline against a real `mlflow server` process on 127.0.0.1."""

import json

import mlflow
import pandas as pd
import pytest

from conftest import BIN_DIR, copy_of_tiny_champion, run, set_params

pytestmark = pytest.mark.integration

DVC = str(BIN_DIR / "dvc")
# Up to the promotion: the comparison report after it reads nothing over HTTP.
REPRO_TO_PROMOTE = [DVC, "repro", "promote"]
# The session's server is shared by other tests' runs and models (a sweep's, say): an
# experiment and a registered model of its own keep this test's counts its own.
EXPERIMENT, MODEL = "lifecycle-over-http", "lifecycle-topics"


def lstm_params(**values) -> dict:
    return {f"models.lstm.{key}": value for key, value in values.items()}


def test_champion_challenger_lifecycle_over_http(
    mlflow_server, tmp_path, tmp_path_factory, tiny_nltk_data
):
    # The session's reproduced tiny champion (one model keeps the three executions short):
    # its data stages are this test's too, so only training onwards runs.
    project, env = copy_of_tiny_champion(
        tmp_path_factory, tiny_nltk_data, tmp_path / "project", mlflow_server
    )
    client = mlflow.MlflowClient(mlflow_server)

    set_params(
        project,
        {
            "tracking.experiment": EXPERIMENT,
            "promotion.registered_model": MODEL,
            **lstm_params(learning_rate=0.01, epochs=4),
        },
    )
    run(REPRO_TO_PROMOTE, project, env)
    first = client.get_model_version_by_alias(MODEL, "champion")
    assert first.version in (1, "1")
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"

    # Worse parameters: registered, but only as challenger.
    set_params(project, lstm_params(learning_rate=0.000001, epochs=1))
    run(REPRO_TO_PROMOTE, project, env)
    decision = json.loads((project / "reports/promotion.json").read_text())
    assert decision["decision"] == "challenger", decision
    assert client.get_model_version_by_alias(MODEL, "champion").version == first.version
    challenger = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(challenger.version) == decision["candidate_version"]
    assert challenger.tags["promotion.decision"] == "challenger"

    # Better parameters on different data (longer sequences): the champion is
    # re-scored on the new validation split and then beaten.
    set_params(project, {**lstm_params(learning_rate=0.01, epochs=15), "preprocess.max_len": 50})
    run(REPRO_TO_PROMOTE, project, env)
    decision = json.loads((project / "reports/promotion.json").read_text())
    assert decision["decision"] == "champion", decision
    assert decision["champion_rescored"] is True
    assert decision["candidate_score"] > decision["champion_score"]
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == decision["candidate_version"] != str(first.version)

    # This process's tracking URI is shared by every test: set it for the load only.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    finally:
        mlflow.set_tracking_uri(previous)
    out = model.predict(
        pd.DataFrame(
            {
                "text": [
                    "Wheat and corn harvest: farmers sold grain bushels",
                    "OPEC oil output cut lifts crude barrel prices",
                ]
            }
        )
    )
    assert list(out["top_topic"]) == ["grain", "crude"]
    assert all(len(t) >= 1 for t in out["topics"])
