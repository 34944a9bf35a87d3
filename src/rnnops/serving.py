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
  body, errors included, is strict JSON (no NaN).
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


def check_declared_length(value: str | None, max_body_bytes: int) -> None:
    """Refuse a body whose declared ``Content-Length`` is over the limit before reading it."""
    if value is None:
        return
    try:
        declared = int(value)
    except ValueError:
        raise RequestError(400, "Content-Length is not a number") from None
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


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
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise RequestError(400, "the request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            400,
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except ValueError as exc:  # NaN / Infinity
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "the request body is nested too deeply") from None
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


def predictions_to_json(frame: Any) -> list[dict[str, Any]]:
    """The pyfunc's output frame as JSON-ready rows; non-finite scores raise."""
    rows = []
    for topics, scores, top_topic, top_score in zip(
        frame["topics"], frame["scores"], frame["top_topic"], frame["top_score"], strict=True
    ):
        rows.append(
            {
                "topics": [str(t) for t in topics],
                "scores": [_finite(s) for s in scores],
                "top_topic": str(top_topic),
                "top_score": _finite(top_score),
            }
        )
    return rows


def strict_json(content: Any) -> bytes:
    """JSON that every parser accepts: NaN and Infinity raise instead of being written."""
    return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- models


class ModelLoadError(RuntimeError):
    """A model could not be resolved, loaded or did not answer; the previous one keeps serving."""


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
    text = " ".join(str(exc).split())
    if len(text) > 400:
        text = text[:400] + "…"
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
                self.last_error = f"could not resolve {self.model_uri}: {exc}"
                raise ModelLoadError(self.last_error) from exc
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
                self.last_error = describe_load_failure(uri, exc)
                raise ModelLoadError(self.last_error) from exc
            for size in range(1, len(SMOKE_TEXTS) + 1):
                try:
                    served.predict(SMOKE_TEXTS[:size])
                except Exception as exc:
                    self.last_error = (
                        f"refused {uri}: it loaded but failed a test prediction "
                        f"({type(exc).__name__}: {exc})"
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
        return error(exc.status_code, str(exc.detail))

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
            return error(500, str(exc), serving=current.info() if current else None)
        return {"status": "reloaded" if changed else "unchanged", "model": served.info()}

    return app


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
    import uvicorn

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

    @app.on_event("startup")
    async def _bound_uvicorn_logs() -> None:  # uvicorn configures its handlers at start
        bound_log_lines()

    # One process: the model is loaded once; requests share it under a lock.
    uvicorn.run(
        app,
        host=cfg.host,
        port=cfg.port,
        workers=1,
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
