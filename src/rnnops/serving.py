"""Online serving: the registered champion behind a small FastAPI app.

Three parts, each testable alone:

- request validation (:func:`check_content_type`, :func:`parse_documents`): pure
  functions that turn a request into a list of documents or a :class:`RequestError`
  with a 4xx status and a message that never echoes the input;
- :class:`ModelHolder`: loads ``models:/NAME@ALIAS`` through :mod:`rnnops.tracking`,
  pinned to the version the alias points at, and swaps a new model in only after it
  loaded (Keras safe mode) and answered a test prediction, so a broken model is
  refused while the previous one keeps serving;
- :func:`create_app`: ``POST /predict``, ``GET /health``, ``POST /reload``. Every
  body, errors included, is strict JSON (no NaN), and so are the answers to requests
  the HTTP parser refuses before the app runs (:func:`json_errors_h11_protocol`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from rnnops.config import ServingConfig

log = logging.getLogger(__name__)

# A model must answer these before it serves; three sizes also warm the compiled
# predict function up for the batch sizes requests bring.
SMOKE_TEXTS = (
    "Oil prices rose after OPEC agreed to cut crude output.",
    "The company reported higher quarterly profit and raised its dividend.",
    "Wheat and corn exports fell as farmers held back the harvest.",
)
EXAMPLE = '{"text": "one document"} or {"text": ["document 1", "document 2"]}'


# --------------------------------------------------------------------------- requests


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message safe to send back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_content_type(value: str | None) -> None:
    """Accept ``application/json`` (UTF-8, the only encoding JSON allows); else 415."""
    media, _, params = (value or "").partition(";")
    if media.strip().lower() != "application/json":
        raise RequestError(415, "Content-Type must be application/json")
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise RequestError(415, "JSON request bodies must be UTF-8 (charset=utf-8)")


def check_content_encoding(value: str | None) -> None:
    """Refuse a compressed body (415): the limits and the parser read the bytes as sent."""
    if value is not None and value.strip().lower() not in ("", "identity"):
        raise RequestError(415, "Content-Encoding is not supported; send the body uncompressed")


def check_declared_length(value: str | None, max_body_bytes: int) -> None:
    """Refuse a body whose declared ``Content-Length`` is over the limit before reading it."""
    if value is None:
        return
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise RequestError(400, "Content-Length is not a non-negative whole number")
    declared = int(digits)
    if declared > max_body_bytes:
        raise RequestError(
            413, f"the request body is {declared} bytes; the limit is {max_body_bytes} bytes"
        )


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (the message names types, never values)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _AmbiguousJSON(ValueError):
    """JSON that parses, but that different parsers read differently (or not at all)."""


def _reject_constant(name: str) -> Any:
    raise _AmbiguousJSON(f"{name} is not allowed in JSON")


# Longer integers are refused while parsing: no field takes a number, and Python's own
# limit (4,300 digits) would answer with advice meant for the server.
MAX_INT_DIGITS = 100


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _AmbiguousJSON(f"a number in the body has more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """An object whose keys are all different: parsers disagree on which duplicate wins."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        named = f'"{dup}"' if dup == "text" else "a key"
        raise _AmbiguousJSON(f"an object in the body repeats {named}; each key may appear once")
    return obj


def _unencodable(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (a ``\\ud800`` escape without its pair),
    which is not Unicode text and which UTF-8 cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _positions(indices: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def parse_documents(body: bytes, max_documents: int) -> list[str]:
    """The documents of a ``/predict`` body, or a :class:`RequestError` (400 or 413).

    The body is a JSON object with one field, ``text``: a string (one document) or an
    array of strings (several). Messages name positions and types, never the input.
    """
    if not body.strip():
        raise RequestError(400, f"the request body is empty; send a JSON object such as {EXAMPLE}")
    if body.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        raise RequestError(
            400, "the request body starts with a byte order mark (BOM); send UTF-8 without one"
        )
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            400, f"the request body is not valid UTF-8 (byte {exc.start} cannot be decoded)"
        ) from None
    try:
        payload = json.loads(
            decoded,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise RequestError(
            400,
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except _AmbiguousJSON as exc:  # NaN / Infinity, duplicate keys, huge integers
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "the request body is nested too deeply") from None
    except ValueError:  # any other value the parser cannot build
        raise RequestError(400, "the request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise RequestError(
            400, f"the body must be a JSON object such as {EXAMPLE}, not {_json_type(payload)}"
        )
    if "text" not in payload:
        raise RequestError(400, f'the body has no "text" field; send {EXAMPLE}')
    if len(payload) > 1:
        raise RequestError(
            400, f'the body has {len(payload) - 1} field(s) besides "text"; only "text" is accepted'
        )
    text = payload["text"]
    if isinstance(text, str):
        documents = [text]
    elif isinstance(text, list):
        if not text:
            raise RequestError(400, '"text" is an empty array; send at least one document')
        if len(text) > max_documents:
            raise RequestError(
                413,
                f"{len(text)} documents in one request; the limit is {max_documents} "
                "(split them over several requests)",
            )
        bad = [i for i, item in enumerate(text) if not isinstance(item, str)]
        if bad:
            raise RequestError(
                400,
                f'"text" must be an array of strings; item {bad[0]} is {_json_type(text[bad[0]])}'
                + (f" (items {_positions(bad)} are not strings)" if len(bad) > 1 else ""),
            )
        documents = text
    else:
        raise RequestError(
            400, f'"text" must be a string or an array of strings, not {_json_type(text)}'
        )
    broken = [i for i, doc in enumerate(documents) if _unencodable(doc)]
    if broken:
        raise RequestError(
            400,
            f"document {_positions(broken)} holds an unpaired surrogate escape "
            "(\\ud800-\\udfff without its pair), which is not Unicode text",
        )
    empty = [i for i, doc in enumerate(documents) if not doc.strip()]
    if empty:
        raise RequestError(
            400,
            f"document {_positions(empty)} is empty or only whitespace"
            if len(empty) == 1
            else f"documents {_positions(empty)} are empty or only whitespace",
        )
    return documents


# --------------------------------------------------------------------------- responses


class NonFiniteScoresError(ValueError):
    """The model produced NaN or infinite scores; they are not sent."""


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise NonFiniteScoresError("the model produced non-finite scores")
    return number


PREDICTION_COLUMNS = ("topics", "scores", "top_topic", "top_score")
COVERAGE_COLUMNS = ("tokens", "known_tokens", "oov_rate", "note")


class NotATopicModelError(ValueError):
    """The model's output is not rnnops' topics frame."""


def predictions_to_json(frame: Any) -> list[dict[str, Any]]:
    """The pyfunc's output frame as JSON-ready rows; non-finite scores raise.

    The coverage fields (``tokens``, ``known_tokens``, ``oov_rate``, ``note``) are passed
    on when the model gives them (versions registered before they existed do not).
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in getattr(frame, "columns", ())]
    if missing:
        raise NotATopicModelError(
            f"its predictions lack the column(s) {', '.join(missing)} that an rnnops topic "
            "model returns"
        )
    extra = [c for c in COVERAGE_COLUMNS if c in frame.columns]
    rows = []
    for i, (topics, scores, top_topic, top_score) in enumerate(
        zip(frame["topics"], frame["scores"], frame["top_topic"], frame["top_score"], strict=True)
    ):
        row = {
            "topics": [str(t) for t in topics],
            "scores": [_finite(s) for s in scores],
            "top_topic": str(top_topic),
            "top_score": _finite(top_score),
        }
        for column in extra:
            value = frame[column].iloc[i]
            if column == "note":
                row["note"] = str(value) if isinstance(value, str) and value else None
            elif column == "oov_rate":
                row["oov_rate"] = _finite(value)
            else:
                row[column] = int(value)
        rows.append(row)
    return rows


def strict_json(content: Any) -> bytes:
    """JSON that every parser accepts: NaN and Infinity raise instead of being written."""
    return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- models


class ModelLoadError(RuntimeError):
    """A model could not be resolved, loaded or did not answer; the previous one keeps serving.

    ``status`` is what ``/reload`` answers (404: no such model, 503: the tracking server
    cannot be reached, 500: the model was refused) and ``cause`` names the case.
    """

    def __init__(self, message: str, status: int = 500, cause: str = "model_refused") -> None:
        super().__init__(message)
        self.status = status
        self.cause = cause


def _clip(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


_UNREACHABLE = (
    "connection refused",
    "failed to establish a new connection",
    "max retries exceeded",
    "timed out",
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "connection reset",
    "remote end closed connection",
)


def _store() -> str:
    try:
        import mlflow

        return mlflow.get_tracking_uri()
    except Exception:  # the message must not fail for want of the URI
        return "the tracking store"


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the tracking server could not be reached."""
    names = {type(e).__name__ for e in _chain(exc)}
    chained = " ".join(str(e) for e in _chain(exc)).lower()
    return bool(
        names & {"StoreUnreachableError", "ConnectionError", "Timeout", "ConnectTimeout"}
    ) or any(k in chained for k in _UNREACHABLE)


def unreachable_failure(action: str, exc: BaseException) -> ModelLoadError:
    """The 503 for a tracking server that refuses or times out while ``action``."""
    if any(type(e).__name__ == "StoreUnreachableError" for e in _chain(exc)):
        return ModelLoadError(_clip(exc), 503, "tracking_unreachable")  # names what to check
    return ModelLoadError(
        f"could not {action}: the MLflow tracking server at {_store()} "
        "(MLFLOW_TRACKING_URI) cannot be reached (refused or timed out); start it or "
        "point MLFLOW_TRACKING_URI at the store that holds the model. The current model "
        "keeps serving",
        503,
        "tracking_unreachable",
    )


def describe_resolve_failure(model_uri: str, exc: BaseException) -> ModelLoadError:
    """Why the alias could not be resolved, in words that say what to do, with its status."""
    if _unreachable(exc):
        return unreachable_failure(f"resolve {model_uri}", exc)
    text = _clip(exc)
    names = {type(e).__name__ for e in _chain(exc)}
    store = _store()
    if names & {"ModelNotFoundError", "NoStoreError"} or "RESOURCE_DOES_NOT_EXIST" in text:
        message = text if model_uri in text else f"{model_uri} not found in {store}: {text}"
        return ModelLoadError(message, 404, "model_not_found")
    return ModelLoadError(
        f"could not resolve {model_uri} in {store}: {type(exc).__name__}: {text}",
        502,
        "tracking_error",
    )


class OnlineKerasModel:
    """A Keras model whose ``predict`` suits request-sized inputs.

    ``Model.predict`` builds a data pipeline on every call (about 50 ms here, for one
    document); ``predict_on_batch`` runs the same compiled function on the array
    directly. Same network, same weights, same scores.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, x: Any, batch_size: int = 256, verbose: int = 0) -> Any:
        import numpy as np

        parts = [
            np.asarray(self.model.predict_on_batch(x[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts) if parts else np.asarray(self.model.predict(x, verbose=0))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def load_pyfunc(uri: str) -> Any:
    """Load the text-in pyfunc (Keras safe mode, see rnnops.models.load_model) for serving."""
    from rnnops import tracking

    pyfunc = tracking.load_text_model(uri)
    try:
        predictor = pyfunc.unwrap_python_model().predictor
    except (AttributeError, TypeError, ValueError):
        return pyfunc  # not rnnops' TopicModel: serve it as it is
    predictor.model = OnlineKerasModel(predictor.model)
    return pyfunc


def describe_load_failure(uri: str, exc: BaseException) -> str:
    """A message that says what is wrong with the model files, not only what failed."""
    text = _clip(exc)
    if 'does not have the "python_function" flavor' in text:
        return (
            f"refused {uri}: it is a model of another flavour (its MLmodel has no "
            "python_function flavour); register the text-in model that `rnnops evaluate` "
            "logs (artifact path model)"
        )
    if (
        isinstance(exc, FileNotFoundError)
        or "No such artifact" in text
        or "No such file or directory" in text
    ):
        return (
            f"refused {uri}: its files are missing from the artifact store (deleted, or a "
            "store on another machine); register the version again from a run that has them"
        )
    # Keras reports an unreadable archive as "File not found ... accessible `.keras` zip file".
    if (
        isinstance(exc, (zipfile.BadZipFile, EOFError))
        or "`.keras` zip file" in text
        or "Bad CRC-32" in text
    ):
        return (
            f"refused {uri}: its model file is truncated or corrupt (not a readable .keras archive)"
        )
    if isinstance(exc, ModuleNotFoundError):
        return (
            f"refused {uri}: its MLmodel names a loader module that is not installed here "
            f"({exc.name or text}); only models logged by rnnops (or installed flavors) load"
        )
    if "safe_mode=False" in text or "enable_unsafe_deserialization" in text:
        return (
            f"refused {uri}: it needs unsafe deserialization (arbitrary Python code such as a "
            f"Lambda layer), which Keras safe mode forbids. Keras: {text}"
        )
    return f"could not load {uri}: {type(exc).__name__}: {text}"


@dataclass
class ServedModel:
    """One loaded model version and what the server says about it."""

    pyfunc: Any = field(repr=False)
    name: str | None
    alias: str | None
    version: str | None
    uri: str
    run_id: str | None = None
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "uri": self.uri,
            "run_id": self.run_id,
            "loaded_at": self.loaded_at,
        }

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        import pandas as pd

        # Keras models are not safe to call from several threads at once.
        with self._lock:
            frame = self.pyfunc.predict(pd.DataFrame({"text": list(texts)}))
        return predictions_to_json(frame)


Resolver = Callable[[str], dict]
Loader = Callable[[str], Any]


class ModelHolder:
    """The model being served; :meth:`reload` swaps in the alias's version only if it works."""

    def __init__(
        self,
        name: str,
        alias: str,
        resolve: Resolver | None = None,
        load: Loader | None = None,
    ) -> None:
        from rnnops import tracking

        self.name = name
        self.alias = alias
        self._resolve = resolve or tracking.resolve_model_version
        self._load = load or load_pyfunc
        self._current: ServedModel | None = None
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def reload(self) -> tuple[ServedModel, bool]:
        """Load the version the alias points at now; return it and whether it changed.

        On any failure raise :class:`ModelLoadError` and keep serving the current model.
        """
        with self._reload_lock:
            try:
                ref = self._resolve(self.model_uri)
            except Exception as exc:
                failure = describe_resolve_failure(self.model_uri, exc)
                self.last_error = str(failure)
                raise failure from exc
            current = self._current
            if current is not None and ref.get("version") and current.version == ref["version"]:
                self.last_error = None
                return current, False
            uri = ref["uri"]
            try:
                served = ServedModel(
                    pyfunc=self._load(uri),
                    name=ref.get("name"),
                    alias=self.alias,
                    version=ref.get("version"),
                    uri=uri,
                    run_id=ref.get("run_id"),
                )
            except Exception as exc:
                failure = (
                    unreachable_failure(f"load {uri}", exc)
                    if _unreachable(exc)
                    else ModelLoadError(describe_load_failure(uri, exc))
                )
                self.last_error = str(failure)
                raise failure from exc
            for size in range(1, len(SMOKE_TEXTS) + 1):
                try:
                    served.predict(SMOKE_TEXTS[:size])
                except NotATopicModelError as exc:
                    self.last_error = (
                        f"refused {uri}: it is not an rnnops topic model: {exc} (a model of "
                        "another flavour or project under this name?)"
                    )
                    raise ModelLoadError(self.last_error) from exc
                except Exception as exc:
                    self.last_error = (
                        f"refused {uri}: it loaded but failed a test prediction "
                        f"({type(exc).__name__}: {_clip(exc)})"
                    )
                    raise ModelLoadError(self.last_error) from exc
            self._current = served
            self.last_error = None
            log.info("now serving %s (version %s)", uri, served.version)
            return served, True


# --------------------------------------------------------------------------- the app


def create_app(holder: ModelHolder, max_body_bytes: int, max_documents: int):
    """The FastAPI app around ``holder``; its limits come from :class:`ServingConfig`."""

    class StrictJSONResponse(JSONResponse):
        def render(self, content: Any) -> bytes:
            return strict_json(content)

    def error(status: int, message: str, **extra: Any) -> StrictJSONResponse:
        return StrictJSONResponse({"error": message, "status": status, **extra}, status)

    app = FastAPI(
        title="rnnops topics",
        description="Reuters topics of raw news text, from the registered champion.",
        docs_url=None,
        redoc_url=None,
        default_response_class=StrictJSONResponse,
    )

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return error(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        response = error(exc.status_code, _clip(exc.detail, 200))
        for key, value in (exc.headers or {}).items():  # e.g. Allow on a 405
            response.headers[key] = value
        return response

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect):
        # Nobody reads this answer; it only keeps a dropped upload out of the error log.
        return error(400, "the client closed the connection before the body was complete")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error(400, "invalid request")  # FastAPI's own detail would echo the input

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.get("/health")
    async def health():
        served = holder.current
        if served is None:
            return error(503, holder.last_error or "no model is loaded", model=None)
        return {"status": "ok", "model": served.info(), "last_reload_error": holder.last_error}

    @app.post("/predict")
    async def predict(request: Request):
        check_content_type(request.headers.get("content-type"))
        check_content_encoding(request.headers.get("content-encoding"))
        check_declared_length(request.headers.get("content-length"), max_body_bytes)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise RequestError(
                    413, f"the request body is over the limit of {max_body_bytes} bytes"
                )
            chunks.append(chunk)
        texts = parse_documents(b"".join(chunks), max_documents)
        served = holder.current
        if served is None:
            raise RequestError(503, holder.last_error or "no model is loaded")
        try:
            predictions = await run_in_threadpool(served.predict, texts)
        except NonFiniteScoresError as exc:
            log.error("version %s: %s", served.version, exc)
            return error(500, f"model version {served.version}: {exc}; nothing was returned")
        return {"model": served.info(), "predictions": predictions}

    @app.post("/reload")
    async def reload():
        try:
            served, changed = await run_in_threadpool(holder.reload)
        except ModelLoadError as exc:
            log.error("reload failed: %s", exc)
            current = holder.current
            return error(
                exc.status, str(exc), cause=exc.cause, serving=current.info() if current else None
            )
        return {"status": "reloaded" if changed else "unchanged", "model": served.info()}

    return app


# --------------------------------------------------------------------------- the HTTP layer

# What a request refused by the HTTP parser (h11, before the app sees it) is told: h11's
# own messages quote the offending bytes, so each known kind gets a fixed sentence.
_H11_ERRORS = (
    ("receive buffer too long", "the request line and headers are too large"),
    ("content-length", "Content-Length is missing, repeated or not a whole number"),
    ("transfer-encoding", "only Transfer-Encoding: chunked is supported"),
    ("illegal chunk", "the chunked body is malformed"),
    ("chunk", "the chunked body is malformed"),
    ("request line", "the request line is malformed (expected: METHOD /path HTTP/1.1)"),
    ("header", "a header line is malformed"),
    ("host", "the request has no Host header (HTTP/1.1 requires one)"),
)


def http_error_body(exc: BaseException | None) -> tuple[int, bytes]:
    """Status and strict-JSON body for a request the HTTP parser refused.

    Always a 4xx: h11 hints 501 for an unknown Transfer-Encoding, which is the client's
    choice to change, so it is answered as a 400.
    """
    hint = getattr(exc, "error_status_hint", 400)
    status = hint if isinstance(hint, int) and 400 <= hint < 500 else 400
    text = str(exc or "").lower()
    reason = next((m for key, m in _H11_ERRORS if key in text), "the request is not valid HTTP/1.1")
    if status == 431:
        reason = "the request line and headers are too large"
    return status, strict_json({"error": f"invalid HTTP request: {reason}", "status": status})


_protocol_class: type | None = None


def json_errors_h11_protocol() -> type:
    """uvicorn's h11 protocol, answering the requests h11 refuses with strict JSON.

    uvicorn answers those (malformed request line or headers, a bad Content-Length or
    chunk, headers over 16 KiB) itself with a text/plain 400 before the app runs; this
    subclass keeps uvicorn's handling and replaces only that answer. A request target that
    is not ASCII, which uvicorn does not catch, gets the same answer instead of a dropped
    connection.
    """
    global _protocol_class
    if _protocol_class is not None:
        return _protocol_class
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONErrorsH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._refused: BaseException | None = None
            next_event = self.conn.next_event

            def recording_next_event() -> Any:
                try:
                    return next_event()
                except h11.RemoteProtocolError as exc:
                    self._refused = exc
                    raise

            self.conn.next_event = recording_next_event

        def handle_events(self) -> None:
            try:
                super().handle_events()
            except UnicodeDecodeError as exc:  # a non-ASCII request target
                self._refused = exc
                self.send_400_response("")

        def send_400_response(self, msg: str) -> None:
            status, body = http_error_body(self._refused)
            self.logger.warning("refused a malformed HTTP request (%d)", status)
            if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                self.transport.close()  # an answer is already on its way: only close
                return
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            try:
                self.transport.write(
                    self.conn.send(h11.Response(status_code=status, headers=headers))
                )
                self.transport.write(self.conn.send(h11.Data(data=body)))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:
                pass  # the connection is beyond answering; closing it is all that is left
            self.transport.close()

    _protocol_class = JSONErrorsH11Protocol
    return _protocol_class


MAX_LOG_CHARS = 2000


class BoundedLogFilter(logging.Filter):
    """Cut every log record to ``MAX_LOG_CHARS`` (tracebacks included): a huge or hostile
    request cannot flood the log through an error message."""

    def __init__(self, limit: int = MAX_LOG_CHARS) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and len(record.exc_text) > self.limit:
            record.exc_text = record.exc_text[-self.limit :]
        if len(message) > self.limit:
            record.msg, record.args = message[: self.limit] + " …[truncated]", None
        return True


def bound_log_lines(limit: int = MAX_LOG_CHARS) -> None:
    """Install :class:`BoundedLogFilter` on the root and uvicorn handlers."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, BoundedLogFilter) for f in handler.filters):
                handler.addFilter(BoundedLogFilter(limit))


def serve(cfg: ServingConfig, access_log: bool = False) -> None:
    """Load the model (fail fast when it cannot be), then answer on ``cfg.host:cfg.port``."""
    bound_log_lines()

    holder = ModelHolder(cfg.registered_model, cfg.alias)
    served, _ = holder.reload()
    log.info(
        "serving %s (version %s) on http://%s:%d",
        holder.model_uri,
        served.version,
        cfg.host,
        cfg.port,
    )
    app = create_app(holder, cfg.max_body_bytes, cfg.max_documents)
    run_app(app, cfg.host, cfg.port, access_log)


def run_app(app: Any, host: str, port: int, access_log: bool = False) -> None:
    """Answer on ``host:port`` with uvicorn, HTTP-layer errors as strict JSON too."""
    import uvicorn

    @app.on_event("startup")
    async def _bound_uvicorn_logs() -> None:  # uvicorn configures its handlers at start
        bound_log_lines()

    # One process: the model is loaded once; requests share it under a lock.
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        http=json_errors_h11_protocol(),
        ws="none",  # no WebSocket routes: an Upgrade request is answered as plain HTTP
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
