"""Serving under bad input and broken models (issue items 10-14), against `rnnops serve`.

The server (conftest ``server``) is one real process for the session, serving the tiny
champion with ``--max-body-bytes 20000 --max-documents 8``. Request validation and the
model holder are also covered without a server in tests/unit/test_serving_core.py.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import SERVE_MAX_BODY_BYTES, SERVE_MAX_DOCUMENTS

pytestmark = pytest.mark.integration

MODEL = "reuters-topics"
SECRET = "s3cr3t-payload-do-not-echo"


def strict_json(resp: httpx.Response):
    """Item 11: every body parses as strict JSON (no NaN, Infinity)."""

    def no_constants(name):
        raise AssertionError(f"{name} in a response body")

    assert resp.headers["content-type"].startswith("application/json")
    return json.loads(resp.text, parse_constant=no_constants)


def _chunks():
    yield b'{"text": "'
    for _ in range(10):
        yield SECRET.encode() * 200
    yield b'"}'


BAD_INPUTS = {
    "missing text field": (dict(json={"texts": [SECRET]}), 400, 'no "text" field'),
    "non-string text": (dict(json={"text": [SECRET, 42]}), 400, "item 1 is a number"),
    "text is an object": (dict(json={"text": {"body": SECRET}}), 400, "not an object"),
    "extra field": (dict(json={"text": "a", SECRET: 1}), 400, 'only "text" is accepted'),
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
    "NaN in the body": (
        dict(content=b'{"text": NaN}', headers={"content-type": "application/json"}),
        400,
        "not valid JSON",
    ),
    "not UTF-8": (
        dict(content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"}),
        400,
        "not valid UTF-8",
    ),
    "duplicate keys": (
        dict(
            content=b'{"text": "a", "text": "' + SECRET.encode() + b'"}',
            headers={"content-type": "application/json"},
        ),
        400,
        'repeats "text"',
    ),
    "byte order mark": (
        dict(content=b'\xef\xbb\xbf{"text": "a"}', headers={"content-type": "application/json"}),
        400,
        "byte order mark",
    ),
    "lone surrogate": (
        dict(
            content=b'{"text": "' + SECRET.encode() + b' \\ud800"}',
            headers={"content-type": "application/json"},
        ),
        400,
        "unpaired surrogate",
    ),
    "wrong content type": (
        dict(content=json.dumps({"text": SECRET}), headers={"content-type": "text/plain"}),
        415,
        "Content-Type must be application/json",
    ),
    "payload over the limit": (
        dict(json={"text": SECRET * 1000}),
        413,
        f"the limit is {SERVE_MAX_BODY_BYTES} bytes",
    ),
    "chunked payload over the limit": (
        dict(content=_chunks, headers={"content-type": "application/json"}),
        413,
        f"over the limit of {SERVE_MAX_BODY_BYTES} bytes",
    ),
    "too many documents": (
        dict(json={"text": [SECRET] * (SERVE_MAX_DOCUMENTS + 1)}),
        413,
        f"{SERVE_MAX_DOCUMENTS + 1} documents in one request; the limit is {SERVE_MAX_DOCUMENTS}",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_10_to_13_bad_input_gets_its_status_strict_json_no_echo(server, case):
    """Items 10-13: wrong types, missing fields, malformed JSON -> 400; wrong content type
    -> 415; oversized or too many documents -> 413. Bodies are strict JSON and never echo
    the input; the server keeps serving."""
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


def test_11_every_response_is_strict_json(server):
    """Item 11: health, predictions, errors, unknown routes: all strict JSON, no NaN/Infinity."""
    responses = [
        server.get("/health"),
        server.post("/predict", json={"text": ["oil prices", "grain exports"]}),
        server.get("/nowhere"),
        server.get("/predict"),
        server.post("/predict", content=b"[1e999]", headers={"content-type": "application/json"}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 404, 405, 400]
    for resp in responses:
        strict_json(resp)
    assert "Infinity" not in responses[-1].text


def test_predictions_say_what_the_model_knew_and_abstain_without_evidence(server):
    """Unknown words: each prediction reports its coverage; text without evidence gets no
    topic (with a note), while a real story keeps its topics."""
    resp = server.post("/predict", json={"text": ["wheat and corn exports rose", "the", "qzxv"]})
    rows = strict_json(resp)["predictions"]
    assert resp.status_code == 200
    story, stop_word, gibberish = rows
    assert story["known_tokens"] > 0 and story["topics"] and story["note"] is None
    for row in (stop_word, gibberish):
        assert row["known_tokens"] == 0 and row["topics"] == [] and "no topic" in row["note"]
    assert gibberish["oov_rate"] == 1.0 and stop_word["oov_rate"] == 0.0


def test_12_oversized_payloads_do_not_slow_concurrent_small_requests(server):
    """Item 12: oversized bodies get 413 at once; small requests beside them keep their latency."""
    small = {"text": "oil prices rose as opec cut crude output"}
    big = b'{"text": "' + b"x" * (SERVE_MAX_BODY_BYTES * 50) + b'"}'

    async def scenario():
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=str(server.base_url), timeout=60, limits=limits
        ) as client:

            async def timed(**kwargs):
                start = time.perf_counter()
                resp = await client.post("/predict", **kwargs)
                return resp.status_code, time.perf_counter() - start

            alone = [await timed(json=small) for _ in range(20)]
            mixed = await asyncio.gather(
                *(timed(json=small) for _ in range(20)),
                *(
                    timed(content=big, headers={"content-type": "application/json"})
                    for _ in range(20)
                ),
            )
            return alone, mixed[:20], mixed[20:]

    alone, small_mixed, big_mixed = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert {s for s, _ in alone + small_mixed} == {200}
    assert {s for s, _ in big_mixed} == {413}
    base = statistics.median(t for _, t in alone)
    loaded = statistics.median(t for _, t in small_mixed)
    # 20 small requests queue behind one model lock either way; the 413s add little.
    assert loaded < max(20 * base, 1.0) + 1.0, (base, loaded)


def test_13_logs_do_not_echo_input_and_lines_are_bounded(server):
    """Item 13: after bad and huge requests the server log holds no input and no huge line."""
    for kwargs, _, _ in BAD_INPUTS.values():
        if not callable(kwargs.get("content")):
            server.post("/predict", **kwargs)
    server.post("/predict", json={"text": SECRET * 600})
    log = Path(server.log_path).read_text()
    assert SECRET not in log
    assert max(map(len, log.splitlines()), default=0) <= 2100


def test_13_log_filter_cuts_long_records():
    """Item 13: the serving log filter bounds messages and tracebacks."""
    import logging

    from rnnops.apps.serving import BoundedLogFilter

    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "%s", ("y" * 10_000,), None)
    BoundedLogFilter(100).filter(record)
    assert len(record.getMessage()) < 120


# --------------------------------------------------------------------------- 14


def _register_variant(client, version: str, tmp_path: Path, mutate) -> str:
    """A new version of the champion's files, its model directory changed by ``mutate``."""
    import mlflow

    # The registry follows the global tracking URI: point it at the champion's store.
    mlflow.set_tracking_uri(client.tracking_uri)
    src = Path(
        mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version}", dst_path=str(tmp_path))
    )
    mutate(src)
    exp = client.get_experiment_by_name("reuters-topics")
    run_ = client.create_run(exp.experiment_id, run_name="tampered")
    client.log_artifacts(run_.info.run_id, str(src), "model")
    client.set_terminated(run_.info.run_id)
    mv = client.create_model_version(
        MODEL, source=f"{run_.info.artifact_uri}/model", run_id=run_.info.run_id
    )
    return str(mv.version)


def _truncate(model_dir: Path) -> None:
    path = model_dir / "artifacts" / "model.keras"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _lambda_model(model_dir: Path) -> None:
    import keras

    inputs = keras.Input((40,), dtype="int32")
    x = keras.layers.Lambda(lambda t: keras.ops.cast(t, "float32") * 0.0)(inputs)
    keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(x)).save(
        model_dir / "artifacts" / "model.keras"
    )


def _unknown_loader(model_dir: Path) -> None:
    path = model_dir / "MLmodel"
    spec = yaml.safe_load(path.read_text())
    spec["flavors"]["python_function"]["loader_module"] = "rnnops_no_such_loader"
    path.write_text(yaml.safe_dump(spec))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_truncate, "truncated or corrupt"),
        (_lambda_model, "Keras safe mode forbids"),
        (_unknown_loader, "loader module that is not installed"),
    ],
    ids=["truncated", "lambda-layer", "unknown-loader"],
)
def test_14_broken_model_is_refused_and_the_serving_model_is_unchanged(
    server, champion, tmp_path, mutate, message
):
    """Item 14: a truncated .keras, a Lambda layer or an unknown loader -> refused clearly,
    the current version keeps serving."""
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


def test_14_reload_of_a_missing_alias_says_so(server, champion):
    """/reload names its cause: the alias points nowhere -> 404 model_not_found."""
    _, _, client, version, _ = champion
    client.delete_registered_model_alias(MODEL, "champion")
    try:
        resp = server.post("/reload")
        body = strict_json(resp)
        assert resp.status_code == 404 and body["cause"] == "model_not_found", body
        assert f"models:/{MODEL}@champion" in body["error"]
        assert body["serving"]["version"] == version
    finally:
        client.set_registered_model_alias(MODEL, "champion", version)
    assert server.post("/reload").status_code == 200
