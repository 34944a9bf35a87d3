"""Property tests of the HTTP surface: whatever the body or the request line, the answer is
a 200 or a 4xx with a strict-JSON body, never a 5xx, and the server keeps serving.

The app runs in-process (FastAPI TestClient) around a real :class:`TopicPredictor`
(tokenizer, vocabulary, coverage, decision rule) whose network is a few lines of numpy,
so every example goes through the serving path without a registry. The requests that
h11 refuses before the app runs are sent as raw bytes to one real uvicorn process,
started as ``rnnops serve`` starts it (:func:`rnnops.apps.serving.run_app`).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnops.apps.serving import ModelHolder, create_app, run_app
from rnnops.core.decision import Decision
from rnnops.core.predictor import TopicPredictor
from rnnops.core.text import OOV, PAD, TextSettings

MAX_BODY_BYTES = 4000
MAX_DOCUMENTS = 4
LABELS = ["crude", "earn", "grain"]
VOCAB = [PAD, OOV, "the", ".", "oil", "crude", "profit", "net", "wheat", "corn", "5"]
GOOD = {"text": "oil and crude prices rose"}


class KeywordNet:
    """Sigmoid scores from keyword ids, plus a high prior for every topic: without the
    abstention rule a document without known words would get all three."""

    def predict(self, ids, batch_size=256, verbose=0):
        ids = np.asarray(ids)
        counts = np.stack(
            [np.isin(ids, group).sum(axis=1) for group in ([4, 5], [6, 7], [8, 9])], axis=1
        )
        return 1 / (1 + np.exp(-(counts * 3.0 + 0.5)))


class TextModel:
    """The registered pyfunc's shape: a frame with a ``text`` column in, topics out."""

    def __init__(self) -> None:
        self.predictor = TopicPredictor(
            model=KeywordNet(),
            vocab=VOCAB,
            labels=LABELS,
            settings=TextSettings(max_len=20),
            decision=Decision(task="multilabel", threshold=0.9, at_least_one=True),
        )

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.predictor.predict(frame["text"].astype(str).tolist())


def make_app(max_body_bytes: int = MAX_BODY_BYTES, max_documents: int = MAX_DOCUMENTS):
    ref = {"name": "m", "version": "1", "run_id": "r", "uri": "models:/m/1"}
    holder = ModelHolder("m", "champion", resolve=lambda uri: ref, load=lambda uri: TextModel())
    holder.reload()
    return create_app(holder, max_body_bytes, max_documents)


def strict_body(resp) -> dict:
    def no_constants(name):
        raise AssertionError(f"{name} in a response body")

    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    resp.content.decode("utf-8")  # valid UTF-8
    return json.loads(resp.text, parse_constant=no_constants)


def assert_answered(resp) -> dict:
    body = strict_body(resp)
    assert resp.status_code == 200 or 400 <= resp.status_code < 500, (resp.status_code, body)
    if resp.status_code != 200:
        assert body["status"] == resp.status_code and isinstance(body["error"], str)
        assert len(body["error"]) < 1000  # never the input echoed back
    return body


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    with TestClient(make_app()) as c:
        yield c


def still_serving(client) -> None:
    resp = client.post("/predict", json=GOOD)
    assert resp.status_code == 200 and strict_body(resp)["predictions"][0]["topics"] == ["crude"]


# JSON values, with the strings that serving has to survive: any code point, lone
# surrogates included (the JSON escape "\ud800" decodes to one).
json_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | json_text,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["text", "texts", "x", ""]) | json_text, children, max_size=4
        )
    ),
    max_leaves=20,
)
bodies = st.one_of(
    json_values,
    st.builds(lambda v: {"text": v}, json_values),
    st.builds(lambda v: {"text": v}, st.lists(json_text, min_size=1, max_size=6)),
)

PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(value=bodies, ascii_only=st.booleans())
def test_any_json_value_gets_200_or_a_strict_json_4xx(client, value, ascii_only):
    # json.dumps writes NaN/Infinity literals and lone surrogates as escapes: both are
    # among the bodies the server must refuse cleanly.
    content = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    resp = client.post("/predict", content=content, headers={"content-type": "application/json"})
    body = assert_answered(resp)
    if resp.status_code == 200:
        for prediction in body["predictions"]:
            assert prediction["known_tokens"] >= 0 and 0 <= prediction["oov_rate"] <= 1
            if prediction["known_tokens"] == 0:
                assert prediction["topics"] == [] and prediction["note"]
    still_serving(client)


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda head, tail: head + tail,
        st.sampled_from([b'{"text": "', b'{"text": ["', b"[", b"\xef\xbb\xbf", b'{"text":1']),
        st.binary(max_size=100),
    ),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1, MAX_BODY_BYTES // 2)),
    st.builds(lambda n: b'{"text": ' + b"9" * n + b"}", st.integers(1, MAX_BODY_BYTES - 20)),
)


@PROPERTY
@given(content=raw_bodies, content_type=st.sampled_from(["application/json", "text/plain"]))
def test_any_bytes_get_200_or_a_strict_json_4xx(client, content, content_type):
    resp = client.post("/predict", content=content, headers={"content-type": content_type})
    assert_answered(resp)
    still_serving(client)


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"]),
    path=st.sampled_from(["/predict", "/health", "/reload", "/", "/nowhere", "/predict/x"])
    | st.text(
        st.characters(min_codepoint=33, max_codepoint=0x2FFF, categories=("L", "N", "P", "S")),
        max_size=20,
        # A second leading slash would make "//host/..." a URL to another host for the client.
    ).map(lambda s: "/" + s.replace("?", "").replace("#", "").lstrip("/")),
)
def test_any_method_and_path_get_a_strict_json_answer(method, path):
    from fastapi.testclient import TestClient

    client = TestClient(make_app())
    resp = client.request(method, path, json=GOOD)
    body = assert_answered(resp)
    if resp.status_code == 405:
        assert resp.headers.get("allow")
    assert body


# --------------------------------------------------------------------------- a real uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_forever(port: int) -> None:
    """The subprocess' entry point: the property tests' app behind rnnops' uvicorn setup."""
    run_app(make_app(max_body_bytes=20_000, max_documents=8), "127.0.0.1", port)


def raw_request(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send ``data`` as is; the status, headers and body of the (first) answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # No half-close: uvicorn drops a response whose client has sent EOF.
        sock.sendall(data)
        raw = b""
        while True:
            head, sep, body = raw.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1.1 "), raw[:200]
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def uvicorn_port(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("uvicorn") / "server.log"
    here = Path(__file__).resolve().parent
    code = f"import sys; sys.path.insert(0, {str(here)!r}); import test_http_properties as t; t.serve_forever({port})"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if (
                    raw_request(
                        port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2
                    )[0]
                    == 200
                ):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def post(body: bytes, *headers: str, path: str = "/predict") -> bytes:
    """A raw POST; a Content-Length is added unless the headers frame the body already."""
    framed = any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers)
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Connection: close", *headers]
    if not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


JSON = "Content-Type: application/json"
HTTP_LAYER = {
    # h11 refuses these before the app runs; uvicorn alone would answer text/plain.
    "request line is garbage": (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
        400,
    ),
    "no HTTP version": (b"GET /health\r\n\r\n", 400),
    "non-ASCII request target": (b"GET /h\xc3\xa9alth HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "no Host header": (b"GET /health HTTP/1.1\r\n\r\n", 400),
    "header without a colon": (b"GET /health HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", 400),
    "space before the colon": (b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "Content-Length not a number": (post(b"{}", JSON, "Content-Length: 12abc"), 400),
    "negative Content-Length": (post(b"{}", JSON, "Content-Length: -5"), 400),
    "two different Content-Lengths": (
        post(b"{}", JSON, "Content-Length: 2", "Content-Length: 3"),
        400,
    ),
    "unknown Transfer-Encoding": (post(b"{}", JSON, "Transfer-Encoding: gzip"), 400),
    "malformed chunk": (post(b"zz\r\n{}\r\n0\r\n\r\n", JSON, "Transfer-Encoding: chunked"), 400),
    # h11 buffers at most 16 KiB of an unfinished request head.
    "headers over 16 KiB": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000, 431),
    # These reach the app.
    "declared body over the limit": (post(b"", JSON, "Content-Length: 999999999"), 413),
    "chunked body over the limit": (
        post(
            chunked([b'{"text": "', b"x" * 15_000, b"y" * 15_000, b'"}']),
            JSON,
            "Transfer-Encoding: chunked",
        ),
        413,
    ),
    "compressed body": (post(b"\x1f\x8b\x08", JSON, "Content-Encoding: gzip"), 415),
    "wrong method": (b"DELETE /predict HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    "unknown path": (b"GET /nowhere/%ff HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    "unknown method": (b"BREW /predict HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    "WebSocket upgrade": (
        b"GET /predict HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        405,
    ),
    "lone surrogate escape": (post(b'{"text": "oil \\ud800"}', JSON), 400),
    "invalid UTF-8": (post(b'{"text": "oil \xff\xfe"}', JSON), 400),
    "byte order mark": (post(b'\xef\xbb\xbf{"text": "oil"}', JSON), 400),
    "duplicate keys": (post(b'{"text": "oil", "text": "wheat"}', JSON), 400),
}


@pytest.mark.parametrize("case", list(HTTP_LAYER))
def test_http_layer_errors_are_strict_json_4xx(uvicorn_port, case):
    data, status = HTTP_LAYER[case]
    got, headers, body = raw_request(uvicorn_port, data)
    assert got == status, (got, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    parsed = json.loads(body.decode("utf-8"), parse_constant=lambda name: pytest.fail(name))
    assert parsed["status"] == status and parsed["error"]
    assert b"aaaa" not in body and b"garbage" not in body  # no input echoed
    good = json.dumps(GOOD).encode()
    again, _, answer = raw_request(uvicorn_port, post(good, JSON))
    assert again == 200 and json.loads(answer)["predictions"][0]["topics"] == ["crude"]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=1, max_size=200))
def test_random_bytes_on_the_wire_never_get_a_5xx(uvicorn_port, data):
    """Whatever a client sends first, the answer (if any) is a strict-JSON 4xx or 2xx."""
    try:
        with socket.create_connection(("127.0.0.1", uvicorn_port), timeout=5) as sock:
            sock.sendall(data)
            # EOF ends a partial request at once (its answer, if any, may be dropped).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
    except (ConnectionResetError, TimeoutError):
        raw = b""
    if raw:
        status = int(raw.split(b" ", 2)[1])
        assert status < 500, raw[:300]
        head = raw.partition(b"\r\n\r\n")[0]
        assert b"application/json" in head.lower(), raw[:300]
    good = json.dumps(GOOD).encode()
    assert raw_request(uvicorn_port, post(good, JSON))[0] == 200
