"""Is the tracking store there and an MLflow store? One short answer before any real call.

MLflow's client retries a dead or hung server for minutes and reports a store that is not a
store as raw SQL. Every entry point that uses tracking asks here first, so the user reads
one line naming ``MLFLOW_TRACKING_URI`` and what to check, within seconds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# One probe's budget. Connecting is quick on a live host; a busy server (many stages
# logging at once on a small machine) may take seconds to answer, a hung one never does:
# the read gets longer, and the stage still fails well within 15 s of starting.
PROBE_TIMEOUT_S = 5.0
PROBE_READ_TIMEOUT_S = 8.0
PROBE_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
SQLITE_HEADER = b"SQLite format 3\x00"
# Tables every MLflow SQL store has; a database with other tables and none of these
# belongs to something else, and MLflow would add its tables to it.
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}
HOW_TO_POINT = (
    "set MLFLOW_TRACKING_URI (or params tracking.uri) to a running `mlflow server` or to a "
    "sqlite:/// store, or unset it to use the project's own sqlite:///mlflow.db"
)


class StoreUnreachableError(RuntimeError):
    """The tracking server did not answer in time or answered 5xx (a retry may help)."""


class NotAStoreError(ValueError):
    """The tracking URI names something that is not an MLflow store (retrying cannot help)."""


class NoStoreError(ValueError):
    """The store that should hold existing runs or models does not exist."""


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def _server_problem(uri: str, timeout: float, read_timeout: float) -> str | None:
    import requests

    url = uri.rstrip("/") + PROBE_PATH
    try:
        response = requests.get(url, timeout=(timeout, read_timeout))
    except requests.exceptions.ConnectTimeout:
        return f"did not accept a connection within {timeout:g} s"
    except requests.exceptions.ReadTimeout:
        return f"accepted the connection but did not answer within {read_timeout:g} s (is it hung?)"
    except requests.exceptions.ConnectionError as exc:
        reason = "refused the connection" if "refused" in str(exc).lower() else "is unreachable"
        return f"{reason} (is `mlflow server` running there?)"
    except requests.exceptions.RequestException as exc:
        return f"could not be asked ({type(exc).__name__})"
    if response.status_code >= 500:
        return f"answered HTTP {response.status_code} (see the server's log)"
    if response.status_code == 404:
        return "answered 404 to the MLflow REST API: the URL is not an MLflow tracking server"
    return None


def _sqlite_problem(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory, not a SQLite file"
    if not path.exists() or path.stat().st_size == 0:
        return None  # a new store: MLflow creates it
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            return "is not a SQLite database"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        return f"cannot be read as SQLite ({exc})"
    if tables and not tables & MLFLOW_TABLES:
        shown = ", ".join(sorted(tables)[:5])
        return f"is a SQLite database of something else (tables: {shown}), not an MLflow store"
    return None


def check_store(
    uri: str,
    must_exist: bool = False,
    timeout: float = PROBE_TIMEOUT_S,
    read_timeout: float = PROBE_READ_TIMEOUT_S,
) -> None:
    """Raise with a one-line message if ``uri`` is no usable MLflow store.

    ``must_exist``: the caller reads runs or models that a store must already hold (serve,
    reproduce), so a store that is not there yet is an error rather than created.
    """
    db = sqlite_path(uri)
    if db is not None:
        problem = _sqlite_problem(db)
        if problem:
            raise NotAStoreError(f"MLFLOW_TRACKING_URI={uri}: {db} {problem}; {HOW_TO_POINT}")
        if must_exist and (not db.exists() or db.stat().st_size == 0):
            raise NoStoreError(
                f"no MLflow store at {db} (MLFLOW_TRACKING_URI={uri}): run the pipeline "
                "first (make run, or dvc repro), or point MLFLOW_TRACKING_URI at the store "
                "that tracked the runs"
            )
        return
    if uri.startswith(("http://", "https://")):
        problem = _server_problem(uri, timeout, read_timeout)
        if problem:
            raise StoreUnreachableError(
                f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) {problem}; "
                f"check the server, or {HOW_TO_POINT}"
            )
