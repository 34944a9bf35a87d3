"""Serving without a registry: request validation, strict JSON, the model holder, the app."""

import json
import math

import pandas as pd
import pytest

from rnnops.apps.serving import (
    ModelHolder,
    ModelLoadError,
    NonFiniteScoresError,
    NotATopicModelError,
    RequestError,
    check_content_encoding,
    check_content_type,
    check_declared_length,
    create_app,
    describe_load_failure,
    describe_resolve_failure,
    http_error_body,
    parse_documents,
    predictions_to_json,
    strict_json,
)
from rnnops.core.config import ConfigError, ServingConfig, serving_config

SECRET = "s3cr3t-payload-do-not-echo"


def refused(body: bytes, max_documents: int = 4) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_documents(body, max_documents)
    assert SECRET not in info.value.message
    return info.value


def strict_loads(text: str):
    def no_constants(name):
        raise AssertionError(f"{name} in a response body")

    return json.loads(text, parse_constant=no_constants)


# --------------------------------------------------------------------------- validation


def test_one_document_or_many():
    assert parse_documents(b'{"text": "oil prices rose"}', 4) == ["oil prices rose"]
    assert parse_documents(b'{"text": ["a b", "c d"]}', 4) == ["a b", "c d"]


@pytest.mark.parametrize(
    "value",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF8"],
)
def test_json_content_types_are_accepted(value):
    check_content_type(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ],
)
def test_other_content_types_get_415(value):
    with pytest.raises(RequestError) as info:
        check_content_type(value)
    assert info.value.status == 415
    assert "application/json" in info.value.message or "UTF-8" in info.value.message


def test_paired_surrogate_escapes_are_text():
    assert parse_documents(b'{"text": "oil \\ud83d\\ude00"}', 4) == ["oil \U0001f600"]


def test_compressed_bodies_get_415():
    check_content_encoding(None)
    check_content_encoding("identity")
    with pytest.raises(RequestError) as info:
        check_content_encoding("gzip")
    assert info.value.status == 415 and "uncompressed" in info.value.message


def test_declared_length_over_the_limit_gets_413():
    check_declared_length(None, 100)
    check_declared_length("100", 100)
    with pytest.raises(RequestError) as info:
        check_declared_length("101", 100)
    assert info.value.status == 413 and "limit is 100 bytes" in info.value.message
    for bad in ("lots", "-5", "1e3", "١٢"):
        with pytest.raises(RequestError) as info:
            check_declared_length(bad, 100)
        assert info.value.status == 400


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "body is empty"),
        (b"  \n ", 400, "body is empty"),
        (b'{"text": "' + SECRET.encode() + b'"', 400, "not valid JSON"),
        (b"{'text': '" + SECRET.encode() + b"'}", 400, "not valid JSON"),
        (b'{"text": NaN}', 400, "NaN is not allowed"),
        (b'{"text": "\xff\xfe' + SECRET.encode() + b'"}', 400, "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        (b'["' + SECRET.encode() + b'"]', 400, "must be a JSON object"),
        (b'"' + SECRET.encode() + b'"', 400, "not a string"),
        (b'{"texts": ["' + SECRET.encode() + b'"]}', 400, 'no "text" field'),
        (b'{"text": "a", "' + SECRET.encode() + b'": 1}', 400, 'only "text" is accepted'),
        (b'{"text": 12345}', 400, "not a number"),
        (b'{"text": {"body": "' + SECRET.encode() + b'"}}', 400, "not an object"),
        (b'{"text": null}', 400, "not null"),
        (b'{"text": ["ok", 5, null, "' + SECRET.encode() + b'"]}', 400, "item 1 is a number"),
        (b'{"text": []}', 400, "empty array"),
        (b'{"text": ["a", "b", "c", "d", "e"]}', 413, "5 documents in one request; the limit is 4"),
        (b'{"text": ["' + SECRET.encode() + b'", "  "]}', 400, "document 1 is empty"),
        (b'{"text": ""}', 400, "document 0 is empty"),
        # Ambiguous JSON: parsers disagree on it, so none of it is guessed at.
        (b'{"text": "a", "text": "' + SECRET.encode() + b'"}', 400, 'repeats "text"'),
        (
            b'{"text": {"' + SECRET.encode() + b'": 1, "' + SECRET.encode() + b'": 2}}',
            400,
            "repeats a key",
        ),
        (b'{"text": ' + b"9" * 5000 + b"}", 400, "more than 100 digits"),
        (b'{"text": -Infinity}', 400, "-Infinity is not allowed"),
        (b'{"text": "a"} {"text": "b"}', 400, "Extra data"),
        (b'{"text": "a"} ' + SECRET.encode(), 400, "Extra data"),
        (b'\xef\xbb\xbf{"text": "a"}', 400, "byte order mark"),
        (b'\xff\xfe{\x00"\x00', 400, "byte order mark"),
        (b'{"text": "' + SECRET.encode() + b'\xc3"}', 400, "not valid UTF-8 (byte"),
        (b"[1e999]", 400, "not an array"),
        # Text that is not Unicode: a lone surrogate, escaped or as raw bytes.
        (b'{"text": "oil \\ud800 ' + SECRET.encode() + b'"}', 400, "unpaired surrogate"),
        (b'{"text": ["ok", "\\udfff"]}', 400, "document 1 holds an unpaired surrogate"),
        (b'{"text": "\xed\xa0\x80"}', 400, "not valid UTF-8"),
    ],
)
def test_bad_bodies_get_a_clear_4xx_without_echo(body, status, message):
    err = refused(body)
    assert err.status == status
    assert message in err.message, err.message


# --------------------------------------------------------------------------- responses


def frame(scores):
    return pd.DataFrame(
        {
            "topics": [["earn"]],
            "scores": [scores],
            "top_topic": ["earn"],
            "top_score": [max(scores)],
        }
    )


def test_coverage_fields_are_passed_on_when_the_model_gives_them():
    with_coverage = frame([0.9]).assign(tokens=[5], known_tokens=[0], oov_rate=[0.8], note=["x"])
    row = predictions_to_json(with_coverage)[0]
    assert (row["tokens"], row["known_tokens"], row["oov_rate"], row["note"]) == (5, 0, 0.8, "x")
    assert predictions_to_json(with_coverage.assign(note=[""]))[0]["note"] is None
    with pytest.raises(NotATopicModelError, match="lack the column"):
        predictions_to_json(pd.DataFrame({"label": [1]}))


def test_predictions_are_plain_json_and_non_finite_scores_are_refused():
    rows = predictions_to_json(frame([0.9]))
    assert rows == [{"topics": ["earn"], "scores": [0.9], "top_topic": "earn", "top_score": 0.9}]
    with pytest.raises(NonFiniteScoresError):
        predictions_to_json(frame([math.nan]))
    with pytest.raises(ValueError):
        strict_json({"score": math.inf})


def test_serving_config_overrides_are_validated():
    base = ServingConfig()
    assert base.host == "127.0.0.1"
    assert serving_config(base, port=9001, alias=None).port == 9001
    with pytest.raises(ConfigError, match=r"serving\.port"):
        serving_config(base, port=70000)
    with pytest.raises(ConfigError, match=r"serving\.max_documents"):
        serving_config(base, max_documents=0)


# --------------------------------------------------------------------------- the model holder


class FakePyfunc:
    def __init__(self, score=0.75, fail=False):
        self.score, self.fail = score, fail

    def predict(self, model_input):
        if self.fail:
            raise RuntimeError("broken weights")
        n = len(model_input)
        return pd.DataFrame(
            {
                "topics": [["grain"]] * n,
                "scores": [[self.score]] * n,
                "top_topic": ["grain"] * n,
                "top_score": [self.score] * n,
            }
        )


class FakeRegistry:
    def __init__(self):
        self.version = "1"
        self.models = {"1": FakePyfunc()}

    resolve_fails = None

    def resolve(self, uri):
        if self.resolve_fails is not None:
            self.resolve_fails(uri)
        return {
            "name": "m",
            "version": self.version,
            "run_id": "r",
            "uri": f"models:/m/{self.version}",
        }

    def load(self, uri):
        model = self.models[uri.rsplit("/", 1)[1]]
        if isinstance(model, BaseException):
            raise model
        return model


def test_holder_swaps_only_to_a_model_that_loads_and_answers():
    registry = FakeRegistry()
    holder = ModelHolder("m", "champion", resolve=registry.resolve, load=registry.load)
    served, changed = holder.reload()
    assert changed and served.version == "1"
    assert holder.reload() == (served, False)

    for version, bad, message in (
        (
            "2",
            ValueError(
                "File not found: filepath=x. Please ensure the file is an accessible `.keras` zip file."
            ),
            "truncated or corrupt",
        ),
        (
            "3",
            ValueError(
                "Requested the deserialization of a `Lambda` layer ... passing `safe_mode=False`"
            ),
            "Keras safe mode forbids",
        ),
        ("4", FakePyfunc(fail=True), "failed a test prediction"),
    ):
        registry.models[version], registry.version = bad, version
        with pytest.raises(ModelLoadError, match=message):
            holder.reload()
        assert holder.current is served and holder.last_error
        assert served.predict(["still answering"])[0]["top_topic"] == "grain"

    registry.models["5"], registry.version = FakePyfunc(score=0.5), "5"
    new, changed = holder.reload()
    assert changed and new.version == "5" and holder.last_error is None


def test_describe_load_failure_names_the_problem():
    assert "truncated" in describe_load_failure("u", EOFError("eof"))
    assert "could not load u: KeyError" in describe_load_failure("u", KeyError("x"))
    flavour = describe_load_failure(
        "u", ValueError('Model does not have the "python_function" flavor')
    )
    assert "another flavour" in flavour
    assert "missing from the artifact store" in describe_load_failure(
        "u", OSError("No such artifact: 'model'")
    )


class StoreUnreachableError(RuntimeError):
    pass


class ModelNotFoundError(RuntimeError):
    pass


def test_describe_resolve_failure_names_the_cause_and_status():
    refused = OSError(
        "HTTPConnectionPool(host='h', port=1): Max retries exceeded (Connection refused)"
    )
    failure = describe_resolve_failure("models:/m@champion", RuntimeError("could not read"))
    assert failure.status == 502 and failure.cause == "tracking_error"
    try:
        raise RuntimeError("could not read models:/m@champion") from refused
    except RuntimeError as exc:
        failure = describe_resolve_failure("models:/m@champion", exc)
    assert failure.status == 503 and failure.cause == "tracking_unreachable"
    assert "MLFLOW_TRACKING_URI" in str(failure) and "cannot be reached" in str(failure)
    own = describe_resolve_failure("models:/m@c", StoreUnreachableError("the server at x refused"))
    assert own.status == 503 and str(own) == "the server at x refused"
    missing = describe_resolve_failure("models:/m@c", ModelNotFoundError("models:/m@c not found"))
    assert missing.status == 404 and missing.cause == "model_not_found"
    assert str(missing) == "models:/m@c not found"


def test_http_layer_errors_become_strict_json_4xx():
    import h11

    for exc, status, words in (
        (
            h11.RemoteProtocolError("illegal request line: b'\\x16" + SECRET + "'", 400),
            400,
            "request line",
        ),
        (h11.RemoteProtocolError("Receive buffer too long", 431), 431, "too large"),
        (
            h11.RemoteProtocolError("Only Transfer-Encoding: chunked is supported", 501),
            400,
            "chunked",
        ),
        (h11.RemoteProtocolError("bad Content-Length", 400), 400, "Content-Length"),
        (None, 400, "not valid HTTP"),
    ):
        got, body = http_error_body(exc)
        parsed = strict_loads(body.decode())
        assert got == status == parsed["status"] and words in parsed["error"]
        assert SECRET not in parsed["error"]


def test_keras_safe_mode_refuses_truncated_and_lambda_models(tmp_path):
    import keras

    from rnnops.core.models import load_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    model.save(tmp_path / "lambda.keras")
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    plain.save(tmp_path / "plain.keras")
    data = (tmp_path / "plain.keras").read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])

    registry = FakeRegistry()
    holder = ModelHolder("m", "champion", resolve=registry.resolve, load=registry.load)
    served, _ = holder.reload()
    for version, name, message in (
        ("2", "truncated", "truncated or corrupt"),
        ("3", "lambda", "Keras safe mode forbids"),
    ):
        try:
            load_model(tmp_path / f"{name}.keras")
        except Exception as exc:
            registry.models[version] = exc
        else:
            pytest.fail(f"{name}.keras loaded in safe mode")
        registry.version = version
        with pytest.raises(ModelLoadError, match=message):
            holder.reload()
        assert holder.current is served


# --------------------------------------------------------------------------- the app, in-process


@pytest.fixture
def app_client():
    from fastapi.testclient import TestClient

    registry = FakeRegistry()
    holder = ModelHolder("m", "champion", resolve=registry.resolve, load=registry.load)
    holder.reload()
    with TestClient(create_app(holder, max_body_bytes=2000, max_documents=3)) as client:
        yield client, registry, holder


def test_app_answers_and_reports_the_version(app_client):
    client, _, _ = app_client
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["model"]["version"] == "1"
    resp = client.post("/predict", json={"text": ["a", "b"]})
    assert resp.status_code == 200
    body = strict_loads(resp.text)
    assert body["model"]["version"] == "1" and len(body["predictions"]) == 2


def test_app_errors_are_strict_json(app_client):
    client, _, _ = app_client
    cases = [
        client.post("/predict", content=b'{"text": "a"}', headers={"content-type": "text/plain"}),
        client.post("/predict", content=b"x" * 3000, headers={"content-type": "application/json"}),
        client.post("/predict", json={"text": ["a"] * 4}),
        client.get("/nowhere"),
        client.get("/predict"),
    ]
    assert [r.status_code for r in cases] == [415, 413, 413, 404, 405]
    for resp in cases:
        body = strict_loads(resp.text)
        assert body["status"] == resp.status_code and body["error"]
        assert resp.headers["content-type"].startswith("application/json")


def test_non_finite_scores_give_500_not_nan(app_client):
    client, _, holder = app_client
    holder.current.pyfunc.score = math.nan
    resp = client.post("/predict", json={"text": "a"})
    assert resp.status_code == 500 and "non-finite" in strict_loads(resp.text)["error"]


def test_wrong_method_names_the_allowed_ones(app_client):
    client, _, _ = app_client
    resp = client.delete("/predict")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert strict_loads(resp.text)["status"] == 405


def test_compressed_body_and_surrogates_get_4xx_in_the_app(app_client):
    client, _, _ = app_client
    headers = {"content-type": "application/json"}
    resp = client.post(
        "/predict", content=b"\x1f\x8b", headers={**headers, "content-encoding": "gzip"}
    )
    assert resp.status_code == 415
    resp = client.post("/predict", content=b'{"text": "\\ud800"}', headers=headers)
    assert resp.status_code == 400 and "surrogate" in strict_loads(resp.text)["error"]


def test_reload_names_its_cause(app_client):
    client, registry, _ = app_client

    def unreachable(uri):
        raise RuntimeError("API request failed: Max retries exceeded (Connection refused)")

    def missing(uri):
        raise ModelNotFoundError(f"{uri} not found in sqlite:///x.db: run the pipeline")

    for resolve, status, cause, words in (
        (unreachable, 503, "tracking_unreachable", "cannot be reached"),
        (missing, 404, "model_not_found", "not found"),
    ):
        registry.resolve_fails = resolve
        try:
            resp = client.post("/reload")
        finally:
            registry.resolve_fails = None
        body = strict_loads(resp.text)
        assert resp.status_code == status and body["cause"] == cause and words in body["error"]
        assert body["serving"]["version"] == "1"
    registry.models["3"], registry.version = (
        OSError("Max retries exceeded (Connection refused)"),
        "3",
    )
    body = strict_loads(client.post("/reload").text)
    assert (
        body["status"] == 503
        and "models:/m/3" in body["error"]
        and "cannot be reached" in body["error"]
    )
    registry.models["2"], registry.version = WrongOutput(), "2"
    resp = client.post("/reload")
    body = strict_loads(resp.text)
    assert resp.status_code == 500 and "not an rnnops topic model" in body["error"]
    assert client.post("/predict", json={"text": "a"}).json()["model"]["version"] == "1"


class WrongOutput:
    """A pyfunc of another project: it answers, with columns that are not topics."""

    def predict(self, model_input):
        return pd.DataFrame({"label": [0] * len(model_input)})


def test_reload_failure_keeps_serving(app_client):
    client, registry, _ = app_client
    registry.models["2"], registry.version = ValueError("accessible `.keras` zip file"), "2"
    resp = client.post("/reload")
    body = strict_loads(resp.text)
    assert resp.status_code == 500 and "truncated" in body["error"]
    assert body["serving"]["version"] == "1"
    assert client.post("/predict", json={"text": "a"}).json()["model"]["version"] == "1"
    assert "truncated" in client.get("/health").json()["last_reload_error"]


# --------------------------------------------------------------------------- what the model knew


class PriorNet:
    """Every topic scores high whatever the ids: the network's prior, no evidence read."""

    def predict(self, ids, batch_size=256, verbose=0):
        import numpy as np

        return np.full((len(ids), 3), 0.8) + np.isin(ids, [3]).sum(axis=1, keepdims=True) * [
            [0.1, 0.0, 0.0]
        ]


@pytest.mark.parametrize("at_least_one", [True, False])
def test_predictor_reports_coverage_and_abstains_without_evidence(at_least_one):
    from rnnops.core.decision import Decision
    from rnnops.core.predictor import NO_EVIDENCE_NOTE, TopicPredictor
    from rnnops.core.text import OOV, PAD, TextSettings

    predictor = TopicPredictor(
        model=PriorNet(),
        vocab=[PAD, OOV, "the", "oil", "."],
        labels=["crude", "earn", "grain"],
        settings=TextSettings(max_len=10),
        decision=Decision("multilabel", 0.5, at_least_one),
    )
    frame = predictor.predict(["Oil, the oil.", "the", "qwzx blorft", "石油", "..."])
    assert frame["tokens"].tolist() == [5, 1, 2, 1, 1]
    assert frame["known_tokens"].tolist() == [2, 0, 0, 0, 0]
    assert frame["oov_rate"].tolist() == pytest.approx([0.2, 0, 1, 1, 1])
    assert frame["topics"].tolist() == [["crude", "earn", "grain"], [], [], [], []]
    assert frame["note"].tolist() == ["", *[NO_EVIDENCE_NOTE] * 4]
    rows = predictions_to_json(frame)
    assert rows[0]["note"] is None and rows[1]["note"] == NO_EVIDENCE_NOTE
    assert rows[1]["top_topic"] == "crude"  # the network's highest score, not a decision
    strict_json(rows)


def test_singlelabel_predictor_abstains_too():
    from rnnops.core.decision import Decision
    from rnnops.core.predictor import TopicPredictor
    from rnnops.core.text import OOV, PAD, TextSettings

    predictor = TopicPredictor(
        model=PriorNet(),
        vocab=[PAD, OOV, "the", "oil"],
        labels=["crude", "earn", "grain"],
        settings=TextSettings(max_len=10),
        decision=Decision("singlelabel", None, True),
    )
    frame = predictor.predict(["oil", "zzzq"])
    assert frame["topics"].tolist() == [["crude"], []]
    assert predictor.predict([]).empty


class WrappedPredictor:
    """What mlflow.pyfunc.load_model gives for rnnops' TopicModel: a frame in, a frame out,
    the predictor reachable through unwrap_python_model(). Counts frame calls."""

    def __init__(self, predictor):
        self.predictor, self.frame_calls = predictor, 0

    def unwrap_python_model(self):
        return self

    def predict(self, model_input):
        self.frame_calls += 1
        return self.predictor.predict(model_input["text"].tolist())


class NaNNet(PriorNet):
    def predict(self, ids, batch_size=256, verbose=0):
        scores = super().predict(ids)
        scores[-1, 0] = float("nan")
        return scores


def test_served_predictor_skips_the_frames_and_answers_the_same():
    from rnnops.apps.serving_models import ServedModel
    from rnnops.core.decision import Decision
    from rnnops.core.predictor import TopicPredictor
    from rnnops.core.text import OOV, PAD, TextSettings

    def predictor(net):
        return TopicPredictor(
            model=net,
            vocab=[PAD, OOV, "the", "oil", "."],
            labels=["crude", "earn", "grain"],
            settings=TextSettings(max_len=10),
            decision=Decision("multilabel", 0.85, True),
        )

    texts = ["Oil, the oil.", "the", "qwzx blorft", "oil oil oil"]
    wrapped = WrappedPredictor(predictor(PriorNet()))
    served = ServedModel(wrapped, "m", "champion", "1", "models:/m/1")
    assert served.predict(texts) == predictions_to_json(
        wrapped.predict(pd.DataFrame({"text": texts}))
    )
    assert wrapped.frame_calls == 1  # only the reference call above went through frames
    with pytest.raises(NonFiniteScoresError):
        ServedModel(WrappedPredictor(predictor(NaNNet())), "m", None, "2", "u").predict(texts)


# --------------------------------------------------------------------------- batching, MLflow's protocol


class LengthPyfunc(FakePyfunc):
    """Scores each document by its length, so rows cannot be swapped unnoticed; counts calls."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def predict(self, model_input):
        texts = list(model_input["text"])
        self.calls.append(len(texts))
        scores = [min(len(t) / 1000, 1.0) for t in texts]
        return pd.DataFrame(
            {
                "topics": [["grain"] if s > 0.01 else [] for s in scores],
                "scores": [[s] for s in scores],
                "top_topic": ["grain"] * len(texts),
                "top_score": scores,
            }
        )


@pytest.fixture
def length_app():
    registry = FakeRegistry()
    registry.models["1"] = LengthPyfunc()
    holder = ModelHolder("m", "champion", resolve=registry.resolve, load=registry.load)
    holder.reload()
    return create_app(holder, max_body_bytes=100_000, max_documents=64), registry.models["1"]


def test_serving_config_batch_fields_are_validated():
    base = ServingConfig()
    assert (base.batch_max_documents, base.batch_max_wait_ms) == (64, 2.0)
    assert serving_config(base, batch_max_wait_ms=0).batch_max_wait_ms == 0
    for field, value in (("batch_max_documents", 0), ("batch_max_wait_ms", -1)):
        with pytest.raises(ConfigError, match=rf"serving\.{field}"):
            serving_config(base, **{field: value})
    with pytest.raises(ConfigError, match=r"serving\.shutdown_timeout_s"):
        serving_config(base, shutdown_timeout_s=0)
    assert (
        base.compiled_batch_sizes[0] == 1
        and base.compiled_batch_sizes[-1] == base.batch_max_documents
    )
    assert serving_config(base, compiled_batch_sizes=[]).compiled_batch_sizes == []
    with pytest.raises(ConfigError, match=r"serving\.compiled_batch_sizes"):
        serving_config(base, compiled_batch_sizes=[1, 0])


def test_concurrent_requests_share_model_calls_and_keep_their_rows(length_app):
    import asyncio

    import httpx

    app, pyfunc = length_app
    texts = [f"document {'x' * i}" for i in range(60)]

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(
                *(client.post("/predict", json={"text": [t, t + "yy"]}) for t in texts)
            )

    before = len(pyfunc.calls)
    answers = asyncio.run(burst())
    for text, resp in zip(texts, answers, strict=True):
        rows = strict_loads(resp.text)["predictions"]
        assert resp.status_code == 200
        assert [r["top_score"] for r in rows] == [len(text) / 1000, (len(text) + 2) / 1000]
    assert len(pyfunc.calls) - before < len(texts)  # some requests shared a call


TEXTS = ["oil prices rose", "wheat exports fell sharply", "a"]
INVOCATIONS = {
    "dataframe_split": {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
    "dataframe_split with index": {
        "dataframe_split": {"index": [0, 1, 2], "columns": ["text"], "data": [[t] for t in TEXTS]}
    },
    "dataframe_records": {"dataframe_records": [{"text": t} for t in TEXTS]},
    "inputs columnar": {"inputs": {"text": TEXTS}},
    "inputs list": {"inputs": TEXTS},
    "inputs records": {"inputs": [{"text": t} for t in TEXTS], "params": {}},
    "instances list": {"instances": TEXTS, "params": None},
}


@pytest.mark.parametrize("case", list(INVOCATIONS))
def test_invocations_answer_what_predict_answers(length_app, case):
    from fastapi.testclient import TestClient

    app, _ = length_app
    with TestClient(app) as client:
        want = strict_loads(client.post("/predict", json={"text": TEXTS}).text)["predictions"]
        resp = client.post("/invocations", json=INVOCATIONS[case])
        assert resp.status_code == 200, resp.text
        assert strict_loads(resp.text) == {"predictions": want}
        one = client.post("/invocations", json={"inputs": {"text": TEXTS[1]}})
        assert strict_loads(one.text) == {"predictions": want[1:2]}


BAD_INVOCATIONS = [
    ({"text": [SECRET]}, 400, "exactly one of the fields"),
    ({"inputs": [SECRET], "instances": [SECRET]}, 400, "exactly one of the fields"),
    ({"inputs": [SECRET], "params": {"k": 1}}, 400, "takes no parameters"),
    ({"dataframe_split": [SECRET]}, 400, "must be an object"),
    ({"dataframe_split": {"columns": ["body"], "data": [[SECRET]]}}, 400, 'no "text" column'),
    (
        {"dataframe_split": {"columns": ["text", "x"], "data": [[SECRET, 1]]}},
        400,
        'besides "text"',
    ),
    ({"dataframe_split": {"columns": ["text"], "data": [SECRET]}}, 400, "row 0 must be an array"),
    ({"dataframe_split": {"columns": ["text"], "data": []}}, 400, "holds no rows"),
    ({"dataframe_records": [{"text": SECRET}, {"body": SECRET}]}, 400, "record 1 has no"),
    ({"dataframe_records": {"text": SECRET}}, 400, "must be an array of records"),
    ({"inputs": {"text": [SECRET, 5]}}, 400, "row 1 is a number"),
    ({"inputs": [SECRET, {"text": SECRET}]}, 400, "mixes records"),
    ({"inputs": SECRET}, 400, "must be an object of columns or an array"),
    ({"inputs": ["ok", "  "]}, 400, "document 1 is empty"),
    ({"inputs": ["a"] * 65}, 413, "the limit is 64"),
]


@pytest.mark.parametrize(("payload", "status", "message"), BAD_INVOCATIONS)
def test_bad_invocations_get_a_4xx_in_strict_json_without_echo(
    length_app, payload, status, message
):
    from fastapi.testclient import TestClient

    app, _ = length_app
    with TestClient(app) as client:
        resp = client.post("/invocations", json=payload)
        body = strict_loads(resp.text)
        assert resp.status_code == status and body["status"] == status, body
        assert message in body["error"] and SECRET not in resp.text, body
        raw = client.post(
            "/invocations", content=b'{"inputs": NaN}', headers={"content-type": "application/json"}
        )
        assert raw.status_code == 400 and "NaN" in strict_loads(raw.text)["error"]
        assert (
            client.post(
                "/invocations", content=b"a,b", headers={"content-type": "text/csv"}
            ).status_code
            == 415
        )


def test_ping_and_version(length_app):
    from fastapi.testclient import TestClient

    import rnnops

    app, _ = length_app
    with TestClient(app) as client:
        assert strict_loads(client.get("/ping").text) == {"status": "ok"}
        version = strict_loads(client.get("/version").text)
        assert version["rnnops"] == rnnops.__version__ and version["model"]["version"] == "1"
        assert version["mlflow"].count(".") >= 1
