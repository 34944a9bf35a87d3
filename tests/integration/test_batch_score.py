"""Batch scoring: the pure core on fake models, and the Prefect flow on the tiny champion."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from rnnops.apps.batch import run_batch_score
from rnnops.apps.batch_input import BatchInputError, read_documents

pytestmark = pytest.mark.integration

MODEL = "reuters-topics"


def fake_predict(texts: list[str]) -> pd.DataFrame:
    if any("explode" in t for t in texts):
        raise RuntimeError("this document breaks the model")
    scores = [float("nan") if "nan" in t else 0.25 + len(t) % 5 / 10 for t in texts]
    return pd.DataFrame(
        {
            "topics": [["earn"]] * len(texts),
            "scores": [[s] for s in scores],
            "top_topic": ["earn"] * len(texts),
            "top_score": scores,
        }
    )


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = ["oil prices rose", "wheat exports fell", "quarterly profit up"]


def mixed_jsonl(path: Path, good: list[str]) -> tuple[Path, dict[int, str]]:
    """Good documents with bad rows between them; returns the bad rows' expected reasons."""
    lines = [
        json.dumps({"id": "a", "text": good[0]}),
        '{"id": "b", "text": ',  # cut-off line
        json.dumps({"id": "c", "text": good[1]}),
        json.dumps({"id": "d", "text": 42}),
        "",
        json.dumps({"id": "e"}),
        json.dumps({"id": "f", "text": "   "}),
        json.dumps({"id": "g", "text": None}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": "h", "text": good[2]}),
    ]
    bad = {
        1: "line 2: not valid JSON",
        3: "line 4: text is a number, not a string",
        4: "line 5: blank line",  # every line is a record: row N is line N + 1
        5: "line 6: no 'text' field",
        6: "line 7: empty text",
        7: "line 8: missing text",
        8: "line 9: a list, not a JSON object",
    }
    return write_jsonl(path, lines), bad


# --------------------------------------------------------------------------- the core


def test_every_row_is_written_and_bad_rows_are_reported(tmp_path):
    src, bad = mixed_jsonl(tmp_path / "in.jsonl", GOOD)
    result = run_batch_score(
        fake_predict,
        src,
        tmp_path / "out.parquet",
        MODEL,
        "7",
        f"models:/{MODEL}/7",
        id_column="id",
        chunk_size=2,
        progress=False,
    )
    assert (result.rows, result.scored, result.bad) == (10, 3, 7)
    assert {b.row: b.reason for b in result.bad_rows} == bad
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["row"].tolist() == list(range(10))
    assert out.loc[out["status"] == "scored", "id"].tolist() == ["a", "c", "h"]
    assert out.loc[out["status"] == "error", "error"].tolist() == list(bad.values())
    assert set(out["model_version"]) == {"7"} and set(out["model_name"]) == {MODEL}
    assert out.loc[out["status"] == "error", "topics"].isna().all()
    assert list(out.loc[0, "topics"]) == ["earn"]


def test_a_document_that_breaks_the_model_costs_only_its_row(tmp_path):
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [json.dumps({"text": t}) for t in ["fine one", "explode here", "fine two", "nan please"]],
    )
    result = run_batch_score(
        fake_predict,
        src,
        tmp_path / "out.csv",
        None,
        None,
        "runs:/x/model",
        chunk_size=4,
        progress=False,
    )
    assert result.scored == 2
    reasons = {b.row: b.reason for b in result.bad_rows}
    assert reasons[1].startswith("scoring failed: RuntimeError")
    assert reasons[3] == "the model produced non-finite scores"
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["status"].tolist() == ["scored", "error", "scored", "error"]
    assert out.loc[0, "topics"] == "earn"


def test_csv_and_parquet_inputs(tmp_path):
    (tmp_path / "in.csv").write_bytes(
        b'doc,text\n1,"wheat, corn"\n2\n3,\n4,"multi\nline story"\n5,a,b\n6,bad \xff byte\n'
    )
    docs = read_documents(tmp_path / "in.csv", id_column="doc")
    assert docs["error"].tolist() == [
        None,
        "line 3: 1 field; the header has 2",
        "line 4: empty text",
        None,
        "line 7: 3 fields; the header has 2",
        "line 8: text is not valid UTF-8",
    ]
    assert docs.loc[3, "text"] == "multi\nline story"
    pd.DataFrame({"body": ["a story", None, "another"]}).to_parquet(tmp_path / "in.parquet")
    docs = read_documents(tmp_path / "in.parquet", text_column="body")
    assert docs["error"].tolist() == [None, "missing text", None]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("in.txt", "x", {}, "unknown input format"),
        ("missing.csv", None, {}, "not found"),
        ("in.csv", "id,body\n1,x\n", {}, "has no column 'text'"),
        ("in.jsonl", '{"body": "x"}\n', {}, "no record has a 'text' field"),
        ("in.csv", "text\nx\n", {"output": "out.json"}, "unknown output format"),
        ("in.csv", "text,status\nx,y\n", {"id_column": "status"}, "clashes with an output column"),
    ],
)
def test_inputs_that_cannot_be_scored_at_all_are_refused(tmp_path, name, content, kwargs, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(BatchInputError, match=message):
        run_batch_score(
            fake_predict,
            tmp_path / name,
            tmp_path / kwargs.get("output", "out.parquet"),
            None,
            None,
            "u",
            id_column=kwargs.get("id_column"),
            progress=False,
        )
    assert not (tmp_path / "out.parquet").exists()


# --------------------------------------------------------------------------- the flow


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_nltk_data):
    import mlflow

    from conftest import tiny_champion

    project, _, uri = tiny_champion(tmp_path_factory, tiny_nltk_data)
    version = str(mlflow.MlflowClient(uri).get_model_version_by_alias(MODEL, "champion").version)
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    return project, uri, version, pyfunc


def test_batch_score_flow_scores_good_rows_and_reports_bad_ones(
    champion, prefect_harness, tmp_path, monkeypatch
):
    from flows.batch_score import batch_score_flow

    project, uri, version, pyfunc = champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    raw = pd.read_parquet(project / "data/raw/reuters.parquet")
    good = [f"{t}\n{x}" for t, x in zip(raw["title"], raw["text"], strict=True)][:3]
    src, bad = mixed_jsonl(tmp_path / "new.jsonl", good)

    summary = batch_score_flow(
        input_path=str(src),
        output_path=str(tmp_path / "scored.parquet"),
        id_column="id",
        chunk_size=2,
        params_path=str(project / "params.yaml"),
    )
    assert (summary["rows"], summary["scored"], summary["bad"]) == (10, 3, 7)
    assert {b["row"]: b["reason"] for b in summary["bad_rows"]} == bad
    assert (summary["model_name"], summary["model_version"]) == (MODEL, version)
    assert summary["model_uri"] == f"models:/{MODEL}/{version}"

    out = pd.read_parquet(tmp_path / "scored.parquet")
    assert len(out) == 10 and out["row"].tolist() == list(range(10))
    assert set(out["model_version"]) == {version} and set(out["model_name"]) == {MODEL}
    scored = out[out["status"] == "scored"]
    want = pyfunc.predict(pd.DataFrame({"text": good}))
    assert [list(t) for t in scored["topics"]] == [list(t) for t in want["topics"]]
    assert scored["top_score"].tolist() == pytest.approx(want["top_score"].tolist(), abs=1e-6)
    # How much of each text the model knew, as the served model reports it.
    assert scored["known_tokens"].tolist() == want["known_tokens"].tolist()
    assert scored["oov_rate"].tolist() == pytest.approx(want["oov_rate"].tolist())
    assert out.loc[out["status"] == "error", "known_tokens"].isna().all()
    assert out.loc[out["status"] == "error", "error"].tolist() == list(bad.values())

    # Same documents as CSV in, CSV out.
    pd.DataFrame({"text": good}).to_csv(tmp_path / "new.csv", index=False)
    summary = batch_score_flow(
        input_path=str(tmp_path / "new.csv"),
        output_path=str(tmp_path / "scored.csv"),
        params_path=str(project / "params.yaml"),
        progress=False,
    )
    assert (summary["rows"], summary["bad"]) == (3, 0)
    csv_out = pd.read_csv(tmp_path / "scored.csv")
    assert csv_out["topics"].tolist() == [";".join(t) for t in want["topics"]]
    assert csv_out["model_version"].astype(str).tolist() == [version] * 3


def test_batch_score_flow_refuses_a_missing_model_without_retrying(
    champion, prefect_harness, tmp_path, monkeypatch
):
    from flows.batch_score import batch_score_flow

    from rnnops.systems.tracking import ModelNotFoundError

    project, uri, _, _ = champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    pd.DataFrame({"text": ["oil prices rose"]}).to_csv(tmp_path / "in.csv", index=False)
    started = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="@nobody not found"):
        batch_score_flow(
            input_path=str(tmp_path / "in.csv"),
            output_path=str(tmp_path / "out.parquet"),
            model_uri=f"models:/{MODEL}@nobody",
            params_path=str(project / "params.yaml"),
        )
    assert time.perf_counter() - started < 5  # no retry delays
    assert not (tmp_path / "out.parquet").exists()


def test_batch_score_flow_has_typed_parameters():
    from flows.batch_score import batch_score_flow

    schema = batch_score_flow.parameters.model_dump()
    props = schema["properties"]
    assert schema["required"] == ["input_path", "output_path"]
    assert props["model_uri"]["default"] == f"models:/{MODEL}@champion"
    assert props["chunk_size"]["type"] == "integer"


def test_batch_score_command_scores_with_the_champion(champion, tmp_path, capsys, monkeypatch):
    """`rnnops batch-score` (in-process): the same rows and scores as the flow's core."""
    from rnnops.apps.cli import main

    project, uri, version, pyfunc = champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "in.csv").write_bytes(
        b'id,text\n1,oil prices rose\n2,"unbalanced\n3,wheat exports fell\n'
    )
    status = main(
        [
            "--params",
            str(project / "params.yaml"),
            "batch-score",
            str(tmp_path / "in.csv"),
            str(tmp_path / "out.parquet"),
            "--id-column",
            "id",
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert f"by models:/{MODEL}/{version}" in captured.out
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["id"].fillna("?").tolist() == ["1", "?", "3"]
    assert out["status"].tolist() == ["scored", "error", "scored"]
    want = pyfunc.predict(pd.DataFrame({"text": ["oil prices rose", "wheat exports fell"]}))
    scored = out[out["status"] == "scored"]
    assert scored["top_score"].tolist() == pytest.approx(want["top_score"].tolist(), abs=1e-6)
