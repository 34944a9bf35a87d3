"""`rnnops serve` as a real process on 127.0.0.1, serving the tiny-corpus champion."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from conftest import BIN_DIR, free_port, make_project, run, tiny_params

pytestmark = pytest.mark.integration

MODEL = "reuters-topics"
SECRET = "s3cr3t-payload-do-not-echo"
MAX_BODY_BYTES = 20_000
MAX_DOCUMENTS = 8

_champion: dict = {}


def tiny_champion(tmp_path_factory, nltk_data: Path) -> tuple[Path, dict, str]:
    """One `dvc repro` (LSTM only) per test session; test_batch_score reuses it."""
    if not _champion:
        base = tmp_path_factory.mktemp("champion")
        params = tiny_params()
        params["models"] = {"lstm": params["models"]["lstm"]}
        project, env = make_project(base / "project", nltk_data, params)
        uri = f"sqlite:///{base / 'mlflow.db'}"
        env["MLFLOW_TRACKING_URI"] = uri
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        run([str(BIN_DIR / "dvc"), "repro"], project, env)
        _champion.update(project=project, env=env, uri=uri)
    return _champion["project"], _champion["env"], _champion["uri"]


def sample_texts(project: Path) -> list[str]:
    raw = pd.read_parquet(project / "data/raw/reuters.parquet")
    raw = raw[raw["split"] == "test"]
    return [f"{t}\n{x}" for t, x in zip(raw["title"], raw["text"], strict=True)]


def strict_json(resp: httpx.Response):
    def no_constants(name):
        raise AssertionError(f"{name} in a response body")

    assert resp.headers["content-type"].startswith("application/json")
    return json.loads(resp.text, parse_constant=no_constants)


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_nltk_data):
    import mlflow

    project, env, uri = tiny_champion(tmp_path_factory, tiny_nltk_data)
    client = mlflow.MlflowClient(uri)
    version = client.get_model_version_by_alias(MODEL, "champion").version
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    return project, env, client, str(version), pyfunc


@pytest.fixture(scope="module")
def server(champion, tmp_path_factory):
    project, env, _, _, _ = champion
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                str(BIN_DIR / "rnnops"),
                "serve",
                "--port",
                str(port),
                "--max-body-bytes",
                str(MAX_BODY_BYTES),
                "--max-documents",
                str(MAX_DOCUMENTS),
            ],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("rnnops serve did not become healthy:\n" + log_path.read_text())
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def expected(pyfunc, texts: list[str]) -> list[dict]:
    out = pyfunc.predict(pd.DataFrame({"text": texts}))
    return [
        {
            "topics": list(t),
            "scores": [float(x) for x in s],
            "top_topic": tt,
            "top_score": float(ts),
        }
        for t, s, tt, ts in zip(
            out["topics"], out["scores"], out["top_topic"], out["top_score"], strict=True
        )
    ]


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["topics"] == w["topics"] and g["top_topic"] == w["top_topic"]
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-5)
        assert g["top_score"] == pytest.approx(w["top_score"], abs=1e-5)


def test_health_reports_the_champion_version(server, champion):
    _, _, _, version, _ = champion
    body = strict_json(server.get("/health"))
    assert body["status"] == "ok"
    assert body["model"]["name"] == MODEL and body["model"]["version"] == version
    assert body["model"]["alias"] == "champion"


def test_predictions_equal_the_in_process_pyfunc(server, champion):
    project, _, _, version, pyfunc = champion
    texts = sample_texts(project)[:MAX_DOCUMENTS]
    want = expected(pyfunc, texts)
    body = strict_json(server.post("/predict", json={"text": texts}))
    assert body["model"]["version"] == version
    assert_same(body["predictions"], want)
    one = strict_json(server.post("/predict", json={"text": texts[0]}))
    assert_same(one["predictions"], want[:1])


def _chunks():
    yield b'{"text": "'
    for _ in range(10):
        yield SECRET.encode() * 200
    yield b'"}'


BAD_INPUTS = {
    "missing text field": (dict(json={"texts": [SECRET]}), 422, 'no "text" field'),
    "non-string text": (dict(json={"text": [SECRET, 42]}), 422, "item 1 is a number"),
    "empty body": (
        dict(content=b"", headers={"content-type": "application/json"}),
        400,
        "body is empty",
    ),
    "malformed JSON": (
        dict(content=b'{"text": "' + SECRET.encode(), headers={"content-type": "application/json"}),
        400,
        "not valid JSON",
    ),
    "wrong content type": (
        dict(content=json.dumps({"text": SECRET}), headers={"content-type": "text/plain"}),
        415,
        "Content-Type must be application/json",
    ),
    "payload over the limit": (
        dict(json={"text": SECRET * 1000}),
        413,
        f"the limit is {MAX_BODY_BYTES} bytes",
    ),
    "chunked payload over the limit": (
        dict(content=_chunks, headers={"content-type": "application/json"}),
        413,
        f"over the limit of {MAX_BODY_BYTES} bytes",
    ),
    "too many documents": (
        dict(json={"text": [SECRET] * (MAX_DOCUMENTS + 1)}),
        413,
        f"{MAX_DOCUMENTS + 1} documents in one request; the limit is {MAX_DOCUMENTS}",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_its_status_and_the_server_keeps_serving(server, case):
    kwargs, status, message = BAD_INPUTS[case]
    if callable(kwargs.get("content")):
        kwargs = {**kwargs, "content": kwargs["content"]()}
    resp = server.post("/predict", **kwargs)
    body = strict_json(resp)
    assert resp.status_code == status, body
    assert body["status"] == status and message in body["error"], body
    assert SECRET not in resp.text
    after = server.post("/predict", json={"text": "wheat and corn exports rose"})
    assert after.status_code == 200 and strict_json(after)["predictions"][0]["topics"]


def test_200_concurrent_requests_are_all_answered_correctly(server, champion):
    project, _, _, version, pyfunc = champion
    texts = sample_texts(project)[:20]
    want = expected(pyfunc, texts)

    async def burst():
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(
            base_url=str(server.base_url), timeout=60, limits=limits
        ) as client:
            return await asyncio.gather(
                *(client.post("/predict", json={"text": texts[i % len(texts)]}) for i in range(200))
            )

    responses = asyncio.run(asyncio.wait_for(burst(), timeout=120))
    assert [r.status_code for r in responses] == [200] * 200
    for i, resp in enumerate(responses):
        body = strict_json(resp)
        assert body["model"]["version"] == version
        assert_same(body["predictions"], [want[i % len(texts)]])


def _register_variant(client, version: str, tmp_path: Path, mutate) -> str:
    """A new version of the champion's files, with model.keras changed by ``mutate``."""
    import mlflow

    src = Path(
        mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version}", dst_path=str(tmp_path))
    )
    mutate(src / "artifacts" / "model.keras")
    exp = client.get_experiment_by_name("reuters-topics")
    run_ = client.create_run(exp.experiment_id, run_name="tampered")
    client.log_artifacts(run_.info.run_id, str(src), "model")
    client.set_terminated(run_.info.run_id)
    mv = client.create_model_version(
        MODEL, source=f"{run_.info.artifact_uri}/model", run_id=run_.info.run_id
    )
    return str(mv.version)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _lambda_model(path: Path) -> None:
    import keras

    inputs = keras.Input((40,), dtype="int32")
    x = keras.layers.Lambda(lambda t: keras.ops.cast(t, "float32") * 0.0)(inputs)
    keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(x)).save(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [(_truncate, "truncated or corrupt"), (_lambda_model, "Keras safe mode forbids")],
    ids=["truncated", "lambda-layer"],
)
def test_reload_refuses_a_broken_champion_and_keeps_serving(
    server, champion, tmp_path, mutate, message
):
    _, _, client, version, _ = champion
    bad = _register_variant(client, version, tmp_path, mutate)
    client.set_registered_model_alias(MODEL, "champion", bad)
    try:
        resp = server.post("/reload")
        body = strict_json(resp)
        assert resp.status_code == 500 and message in body["error"], body
        assert f"models:/{MODEL}/{bad}" in body["error"]
        assert body["serving"]["version"] == version
        health = strict_json(server.get("/health"))
        assert health["model"]["version"] == version and message in health["last_reload_error"]
        answer = strict_json(server.post("/predict", json={"text": "oil prices and crude output"}))
        assert answer["model"]["version"] == version
    finally:
        client.set_registered_model_alias(MODEL, "champion", version)
    resp = server.post("/reload")
    assert resp.status_code == 200 and strict_json(resp)["status"] == "unchanged"
    assert strict_json(server.get("/health"))["last_reload_error"] is None


def test_serve_refuses_to_start_without_a_champion(champion, tmp_path):
    project, env, _, _, _ = champion
    proc = run(
        [str(BIN_DIR / "rnnops"), "serve", "--port", str(free_port()), "--alias", "nobody"],
        project,
        env,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "models:/reuters-topics@nobody" in proc.stderr and "not found" in proc.stderr
