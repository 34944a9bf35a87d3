"""Online serving: the registered champion behind a small FastAPI app.

The parts, each testable alone:

- request validation (:mod:`rnnops.apps.serving_requests`, and MLflow's scoring protocol in
  :mod:`rnnops.apps.scoring_protocol`): pure functions that turn a request into a list of
  documents or a :class:`RequestError` with a 4xx status and a message that never
  echoes the input;
- :class:`ModelHolder` (:mod:`rnnops.apps.serving_models`): loads ``models:/NAME@ALIAS``
  pinned to the version the alias points at, and swaps a new model in only after it
  loaded (Keras safe mode) and answered a test prediction;
- :class:`rnnops.core.batcher.MicroBatcher`: concurrent requests share one model call;
- :func:`create_app` (here): ``POST /predict``, ``GET /health``, ``POST /reload``, and
  MLflow's ``POST /invocations``, ``GET /ping``, ``GET /version``. Every body, errors
  included, is strict JSON (no NaN), and so are the answers to requests the HTTP parser
  refuses before the app runs (:mod:`rnnops.apps.serving_http`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from rnnops.apps.scoring_protocol import parse_invocation
from rnnops.apps.serving_http import (  # noqa: F401 (the serving API, importable from here)
    MAX_LOG_CHARS,
    BoundedLogFilter,
    bound_log_lines,
    http_error_body,
    json_errors_h11_protocol,
)
from rnnops.apps.serving_models import (  # noqa: F401
    SMOKE_TEXTS,
    ModelHolder,
    ModelLoadError,
    NonFiniteScoresError,
    NotATopicModelError,
    ServedModel,
    _clip,
    describe_load_failure,
    describe_resolve_failure,
    load_pyfunc,
    predictions_to_json,
    unreachable_failure,
)
from rnnops.apps.serving_network import OnlineKerasModel  # noqa: F401
from rnnops.apps.serving_requests import (  # noqa: F401
    EXAMPLE,
    RequestError,
    check_content_encoding,
    check_content_type,
    check_declared_length,
    parse_documents,
    strict_json,
)
from rnnops.core.batcher import MicroBatcher
from rnnops.core.config import ServingConfig

log = logging.getLogger(__name__)

DEFAULTS = ServingConfig()

# Brings the other workers to a version: (version, changed here) -> each worker's answer.
SyncWorkers = Callable[[str | None, bool], list[dict[str, Any]]]


def _versions() -> dict[str, str]:
    import mlflow

    import rnnops

    return {"mlflow": mlflow.__version__, "rnnops": rnnops.__version__}


class StrictJSONResponse(JSONResponse):
    """Strict JSON. Scoring and health handlers return one themselves: a plain dict would
    first go through FastAPI's ``jsonable_encoder``, a tenth of a small request's time."""

    def render(self, content: Any) -> bytes:
        return strict_json(content)


def error_response(status: int, message: str, **extra: Any) -> StrictJSONResponse:
    """An error answer: its message, its status, and any extra fields, as strict JSON."""
    return StrictJSONResponse({"error": message, "status": status, **extra}, status)


def create_app(
    holder: ModelHolder,
    max_body_bytes: int,
    max_documents: int,
    *,
    batch_max_documents: int = DEFAULTS.batch_max_documents,
    batch_max_wait_ms: float = DEFAULTS.batch_max_wait_ms,
    sync_workers: SyncWorkers | None = None,
):
    """The FastAPI app around ``holder``; its limits come from :class:`ServingConfig`.

    ``sync_workers`` (a worker of ``rnnops serve --workers N``) brings the other workers
    to the version a ``/reload`` has loaded here, and returns each worker's answer."""
    # Requests for the same model version share model calls; a reload starts new batches.
    batcher: MicroBatcher[str, dict] = MicroBatcher(
        lambda served, texts: served.predict(texts),
        max_batch=batch_max_documents,
        max_wait_s=batch_max_wait_ms / 1000,
    )
    app = FastAPI(
        title="rnnops topics",
        description="Reuters topics of raw news text, from the registered champion.",
        docs_url=None,
        redoc_url=None,
        default_response_class=StrictJSONResponse,
    )
    app.state.batcher = batcher
    _add_error_handlers(app)
    _add_scoring_routes(app, holder, batcher, max_body_bytes, max_documents)
    _add_model_routes(app, holder, sync_workers)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure answered as strict JSON that names the problem, never the input."""

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return error_response(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        response = error_response(exc.status_code, _clip(exc.detail, 200))
        for key, value in (exc.headers or {}).items():  # e.g. Allow on a 405
            response.headers[key] = value
        return response

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect):
        # Nobody reads this answer; it only keeps a dropped upload out of the error log.
        return error_response(400, "the client closed the connection before the body was complete")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error_response(400, "invalid request")  # FastAPI's own detail would echo the input

    @app.exception_handler(NonFiniteScoresError)
    async def _non_finite(request: Request, exc: NonFiniteScoresError):
        return error_response(500, f"{exc}; nothing was returned")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")


def _add_scoring_routes(
    app: FastAPI,
    holder: ModelHolder,
    batcher: MicroBatcher,
    max_body_bytes: int,
    max_documents: int,
) -> None:
    """``/predict`` and MLflow's ``/invocations``: bounded bodies scored in shared batches."""

    async def read_body(request: Request) -> bytes:
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
        return b"".join(chunks)

    async def score(texts: list[str]) -> tuple[ServedModel, list[dict[str, Any]]]:
        served = holder.current
        if served is None:
            raise RequestError(503, holder.last_error or "no model is loaded")
        try:
            return served, await batcher.submit(texts, key=served)
        except NonFiniteScoresError as exc:
            log.error("version %s: %s", served.version, exc)
            raise NonFiniteScoresError(f"model version {served.version}: {exc}") from None

    @app.post("/predict")
    async def predict(request: Request):
        texts = parse_documents(await read_body(request), max_documents)
        served, predictions = await score(texts)
        return StrictJSONResponse({"model": served.info(), "predictions": predictions})

    @app.post("/invocations")
    async def invocations(request: Request):
        """MLflow's scoring protocol; the same predictions as ``/predict``."""
        texts = parse_invocation(await read_body(request), max_documents)
        _, predictions = await score(texts)
        return StrictJSONResponse({"predictions": predictions})


def _add_model_routes(app: FastAPI, holder: ModelHolder, sync_workers: SyncWorkers | None) -> None:
    """What is served (``/health``, ``/ping``, ``/version``) and ``/reload``."""

    @app.get("/health")
    async def health():
        served = holder.current
        if served is None:
            return error_response(503, holder.last_error or "no model is loaded", model=None)
        return StrictJSONResponse(
            {
                "status": "ok",
                "model": served.info(),
                "last_reload_error": holder.last_error,
                "pid": os.getpid(),  # which worker answered, under --workers N
            }
        )

    @app.get("/ping")
    async def ping():
        if holder.current is None:
            return error_response(503, holder.last_error or "no model is loaded")
        return {"status": "ok"}

    @app.get("/version")
    async def version():
        served = holder.current
        return {**_versions(), "model": served.info() if served else None}

    @app.post("/reload")
    async def reload():
        try:
            served, changed = await run_in_threadpool(holder.reload)
        except ModelLoadError as exc:
            log.error("reload failed: %s", exc)
            current = holder.current
            return error_response(
                exc.status, str(exc), cause=exc.cause, serving=current.info() if current else None
            )
        if sync_workers is None:
            return {"status": "reloaded" if changed else "unchanged", "model": served.info()}
        workers = await run_in_threadpool(sync_workers, served.version, changed)
        failed = [w for w in workers if w["error"]]
        if failed:
            log.error("reload: %d of %d workers failed to load", len(failed), len(workers))
            return error_response(
                500,
                f"version {served.version} loaded in {len(workers) - len(failed)} of "
                f"{len(workers)} workers; the others keep serving what they served (see "
                "workers[].error), so answers can come from two versions until a /reload "
                "succeeds everywhere",
                cause="workers_differ",
                serving=served.info(),
                workers=workers,
            )
        status = "reloaded" if any(w["changed"] for w in workers) else "unchanged"
        return {"status": status, "model": served.info(), "workers": workers}


def serve(cfg: ServingConfig, access_log: bool = False) -> None:
    """Load the model (fail fast when it cannot be), then answer on ``cfg.host:cfg.port``;
    with ``cfg.workers`` > 1, from that many processes (:mod:`rnnops.apps.serving_workers`)."""
    bound_log_lines()
    if cfg.workers > 1:
        serve_with_workers(cfg, access_log)
        return
    holder = serving_holder(cfg)
    served, _ = holder.reload()
    log.info(
        "serving %s (version %s) on http://%s:%d",
        holder.model_uri,
        served.version,
        cfg.host,
        cfg.port,
    )
    serve_holder(cfg, holder, access_log)


def serving_holder(cfg: ServingConfig) -> ModelHolder:
    """The holder of ``cfg``'s model, its network compiled for ``cfg``'s batch sizes."""
    return ModelHolder(
        cfg.registered_model,
        cfg.alias,
        load=functools.partial(load_pyfunc, batch_sizes=cfg.compiled_batch_sizes),
    )


def serve_holder(
    cfg: ServingConfig,
    holder: ModelHolder,
    access_log: bool,
    *,
    sockets: list[Any] | None = None,
    sync_workers: SyncWorkers | None = None,
) -> None:
    """The app around ``holder``, with ``cfg``'s limits, answering until SIGTERM."""
    app = create_app(
        holder,
        cfg.max_body_bytes,
        cfg.max_documents,
        batch_max_documents=cfg.batch_max_documents,
        batch_max_wait_ms=cfg.batch_max_wait_ms,
        sync_workers=sync_workers,
    )
    run_app(app, cfg.host, cfg.port, access_log, cfg.shutdown_timeout_s, sockets=sockets)


def serve_with_workers(cfg: ServingConfig, access_log: bool) -> None:
    """Resolve the alias and bind the port here, so either failure ends the command at
    once, then run ``cfg.workers`` processes that serve that version on the socket."""
    import mlflow

    from rnnops.apps.serving_workers import Supervisor, WorkerStartError

    holder = ModelHolder(cfg.registered_model, cfg.alias)
    ref = holder.resolve()
    # A taken port: uvicorn logs why and exits with its start-up failure status.
    sock = _uvicorn_config(None, cfg.host, cfg.port, access_log, 1).bind_socket()
    log.info(
        "serving %s (version %s) on http://%s:%d with %d workers",
        holder.model_uri,
        ref["version"],
        cfg.host,
        cfg.port,
        cfg.workers,
    )
    try:
        Supervisor(cfg, ref["version"], sock, access_log, mlflow.get_tracking_uri()).run()
    except WorkerStartError as exc:
        raise ModelLoadError(f"a worker could not start: {exc}") from None
    finally:
        sock.close()


def _uvicorn_config(app: Any, host: str, port: int, access_log: bool, shutdown_timeout_s: int):
    import uvicorn

    # One process per model copy: concurrent requests share its calls (serving_workers
    # runs several such processes on one socket).
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        http=json_errors_h11_protocol(),
        loop="auto",  # uvloop (a dependency where it builds), else asyncio's loop
        ws="none",  # no WebSocket routes: an Upgrade request is answered as plain HTTP
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=shutdown_timeout_s,
    )


def run_app(
    app: Any,
    host: str,
    port: int,
    access_log: bool = False,
    shutdown_timeout_s: int = DEFAULTS.shutdown_timeout_s,
    sockets: list[Any] | None = None,
) -> None:
    """Answer on ``host:port`` (or on ``sockets`` already bound) with uvicorn, HTTP-layer
    errors as strict JSON too.

    On SIGTERM or SIGINT uvicorn stops accepting connections, answers the requests it
    has already read (their model calls included) and closes idle keep-alive
    connections; after ``shutdown_timeout_s`` whatever is still running is cancelled.
    """
    import uvicorn
    from uvicorn.main import STARTUP_FAILURE

    config = _uvicorn_config(app, host, port, access_log, shutdown_timeout_s)
    # The Config has just installed uvicorn's log handlers: bound them before any request.
    bound_log_lines()
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if not server.started:  # the port is taken, say: uvicorn has logged why
        raise SystemExit(STARTUP_FAILURE)
