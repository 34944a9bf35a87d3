"""The tracking store: which one, its first creation, its experiment, bounded HTTP."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)

EXP_TMP_MARKER = f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}"
STORE_FILE = "mlflow.db"
RESERVED_ALIASES = ("latest",)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so that open runs end as KILLED."""


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused an operation."""


def project_root(start: Path | None = None) -> Path:
    """The project's root, also from a DVC experiment's temporary copy.

    `dvc exp run --temp` runs stages under `<root>/.dvc/tmp/exps/...`; runs
    started there must log to the project's store, not to the throwaway copy.
    """
    path = Path(start or os.getcwd()).resolve()
    text = str(path)
    if EXP_TMP_MARKER in text:
        return Path(text.split(EXP_TMP_MARKER)[0])
    return path


def resolve_tracking_uri(configured: str | None, root: Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI``, else params ``tracking.uri``, else the project's SQLite store."""
    root = project_root(root)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if not uri:
        return f"sqlite:///{root / STORE_FILE}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # A relative SQLite path is taken relative to the project root, not the cwd.
        return f"sqlite:///{(root / uri[len('sqlite:///') :]).resolve()}"
    return uri


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 600.0) -> Iterator[None]:
    """An exclusive lock on ``path`` (:func:`rnnops.systems.locks.hold`), bounded in time."""
    from rnnops.systems.locks import LockTimeout, acquire, release

    try:
        lock = acquire(path, timeout)
    except LockTimeout as exc:
        raise TrackingError(f"timed out waiting: {exc}") from None
    try:
        yield
    finally:
        release(lock)


# MLflow's client defaults (7 retries, backoff factor 2, 120 s timeout) let one call to a
# stopped server hang for minutes; these bound it to well under a minute. A value the user
# sets in the environment wins.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def bounded_http_defaults() -> None:
    """Bound MLflow's HTTP retries and timeouts unless the user configured them."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def ensure_store(uri: str) -> None:
    """Create the tracking store once, before any parallel use.

    Concurrent first use of a fresh SQLite store runs its migrations several
    times at once and corrupts it; a file lock makes the first creation serial.
    """
    import mlflow

    db = _sqlite_path(uri)
    if db is None:
        return
    with file_lock(db.with_name(db.name + ".lock")):
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def configure(uri_param: str | None, experiment: str) -> str:
    """Point MLflow at the resolved store and experiment; return the URI."""
    import mlflow

    from rnnops.systems.store_check import check_store

    uri = resolve_tracking_uri(uri_param)
    bounded_http_defaults()
    check_store(uri)
    ensure_store(uri)
    mlflow.set_tracking_uri(uri)
    if _sqlite_path(uri) is not None and not os.environ.get("MLFLOW_ARTIFACT_ROOT"):
        root = _sqlite_path(uri).parent / "mlartifacts"
        client = mlflow.MlflowClient()
        if client.get_experiment_by_name(experiment) is None:
            with contextlib.suppress(Exception):  # another process created it first
                client.create_experiment(experiment, artifact_location=root.as_uri())
    describe_experiment(mlflow.set_experiment(experiment))
    return uri


EXPERIMENT_TAGS = {
    # Marks the experiment as model training; MLflow 3.17's UI still picks its view from the
    # URL (`?workflowType=machine_learning`, which run_url and `make ui` give).
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": (
        "Recurrent topic classifiers on Reuters newswire, one run per model and pipeline "
        "execution (dvc.yaml: train@NAME, then evaluate@NAME in the same run). Compare "
        "validation_* metrics (what selection reads) beside test_*; the registered model's "
        "`champion` alias is the promoted version."
    ),
}


def describe_experiment(experiment: Any) -> None:
    """Give a new experiment its view and description; tags a user set are kept."""
    import mlflow

    missing = {k: v for k, v in EXPERIMENT_TAGS.items() if k not in (experiment.tags or {})}
    for key, value in missing.items():
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)


def current_tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def use_tracking_uri(configured: str | None) -> str:
    """Point MLflow at the store that models are read from (serving, batch scoring).

    Unlike :func:`configure` it creates neither a store nor an experiment.
    """
    import mlflow

    from rnnops.systems.store_check import check_store

    uri = resolve_tracking_uri(configured)
    bounded_http_defaults()
    check_store(uri, must_exist=True)  # models are read, never a new store made to hold them
    mlflow.set_tracking_uri(uri)
    return uri
