"""Prefect flow: score a file of new documents with a registered model.

``batch_score_flow`` reads CSV, Parquet or JSON Lines with a text column, scores it
in chunks (a progress bar on stderr) and writes Parquet or CSV with every row's
topics, scores and the model name and version that scored it: one row per input record,
in order. Records that cannot be scored (malformed ones too) are written with
``status = "error"`` and their reason, listed in the flow's result and in a Prefect table
artifact, never dropped or merged. ``rnnops batch-score`` runs the same core without
Prefect.

The alias is resolved once, first: the whole file is scored by that one version even
if ``champion`` moves while the flow runs. The tracking store is
``$MLFLOW_TRACKING_URI``, else ``tracking.uri`` of ``params_path``, else the project's
``mlflow.db``. ``flows/deployments.py`` serves this flow on an interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from rnnops.apps.batch import (
    BatchInputError,
    check_csv_records,
    check_paths,
    pyfunc_predict,
    run_batch_score,
)
from rnnops.core.config import load_params
from rnnops.systems import tracking

DEFAULT_MODEL_URI = "models:/reuters-topics@champion"
MAX_REPORTED_BAD_ROWS = 1000


def retry_unless_not_found(task, task_run, state) -> bool:
    """Retry reaching the registry, not asking again for a model it says does not exist."""
    try:
        state.result(raise_on_failure=True)
    except tracking.ModelNotFoundError:
        return False
    except Exception:
        return True
    return False


@task(
    name="resolve-model",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_not_found,
    persist_result=False,
)
def resolve_model(model_uri: str, tracking_uri: str | None) -> dict[str, str | None]:
    """Pin ``model_uri`` to a version (retried: the registry may be briefly unreachable)."""
    store = tracking.use_tracking_uri(tracking_uri)
    ref = tracking.resolve_model_version(model_uri)
    get_run_logger().info(
        "%s is %s (version %s) in %s", model_uri, ref["uri"], ref["version"], store
    )
    return ref


@task(name="score-file", persist_result=False)
def score_file(
    input_path: str,
    output_path: str,
    model: dict[str, str | None],
    tracking_uri: str | None,
    text_column: str,
    id_column: str | None,
    chunk_size: int,
    progress: bool,
    csv_records: str = "auto",
) -> dict[str, Any]:
    logger = get_run_logger()
    tracking.use_tracking_uri(tracking_uri)
    pyfunc = tracking.load_text_model(model["uri"])
    result = run_batch_score(
        pyfunc_predict(pyfunc),
        input_path,
        output_path,
        model_name=model["name"],
        model_version=model["version"],
        model_uri=model["uri"],
        text_column=text_column,
        id_column=id_column,
        chunk_size=chunk_size,
        progress=progress,
        csv_records=csv_records,
    )
    logger.info(
        "scored %d of %d rows in %.1fs with %s -> %s",
        result.scored,
        result.rows,
        result.seconds,
        result.model_uri,
        result.output_path,
    )
    if result.bad:
        shown = result.bad_rows[:10]
        logger.warning(
            "%d rows could not be scored (written with status 'error'): %s%s",
            result.bad,
            "; ".join(f"row {b.row}: {b.reason}" for b in shown),
            " ..." if result.bad > len(shown) else "",
        )
    return result.to_dict(max_bad_rows=MAX_REPORTED_BAD_ROWS)


def _tracking_uri(params_path: str) -> str | None:
    path = Path(params_path)
    return load_params(path).tracking.uri if path.is_file() else None


@flow(name="batch-score", description="Score a file of documents with a registered model.")
def batch_score_flow(
    input_path: str,
    output_path: str,
    model_uri: str = DEFAULT_MODEL_URI,
    text_column: str = "text",
    id_column: str | None = None,
    chunk_size: int = 1000,
    params_path: str = "params.yaml",
    progress: bool = True,
    csv_records: str = "auto",
) -> dict[str, Any]:
    """Score ``input_path`` (.csv, .parquet, .jsonl) into ``output_path`` (.parquet, .csv).

    Returns counts (``rows``, ``scored``, ``bad``), the model ``name``/``version``/``uri``
    and up to 1000 ``bad_rows`` (``row``: 0-based record number, ``reason``); the output
    file holds one row per input record. ``csv_records`` says how CSV records are
    delimited: ``auto`` (quoted fields may span lines, unless that would swallow records),
    ``lines`` (one record a line) or ``quoted`` (quoted fields span lines as written).
    """
    if chunk_size < 1:
        raise BatchInputError(f"chunk_size must be at least 1, got {chunk_size}")
    check_csv_records(csv_records)
    check_paths(input_path, output_path)
    if not Path(input_path).is_file():
        raise BatchInputError(f"input file {input_path} not found")
    tracking_uri = _tracking_uri(params_path)
    model = resolve_model(model_uri, tracking_uri)
    summary = score_file(
        input_path,
        output_path,
        model,
        tracking_uri,
        text_column,
        id_column,
        chunk_size,
        progress,
        csv_records,
    )
    if summary["bad_rows"]:
        create_table_artifact(
            key="batch-score-bad-rows",
            table=summary["bad_rows"][:MAX_REPORTED_BAD_ROWS],
            description=(
                f"{summary['bad']} of {summary['rows']} rows of {input_path} could not be "
                f"scored by {summary['model_uri']}; they are in {output_path} with "
                "status 'error'."
            ),
        )
    return summary
