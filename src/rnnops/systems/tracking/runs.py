"""Run lifecycle (never left RUNNING), logging, and the queries flows and sweeps make."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rnnops.core import contract
from rnnops.systems.tracking.lineage import process_tags
from rnnops.systems.tracking.store import Terminated, TrackingError

log = logging.getLogger(__name__)


EXECUTION_TAG = contract.STAGE_EXECUTION_TAG
EXECUTION_ENV = contract.STAGE_EXECUTION_ENV


def execution_key(stage: str) -> str | None:
    """This stage execution's key when a flow runs it (stable across retries), else None."""
    execution = os.environ.get(EXECUTION_ENV)
    return f"{execution}/{stage}" if execution else None


def _run_of_execution(key: str) -> str | None:
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient()
    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not exp_ids:
        return None
    found = client.search_runs(exp_ids, f"tags.`{EXECUTION_TAG}` = '{key}'", max_results=1)
    return found[0].info.run_id if found else None


@contextlib.contextmanager
def stage_run(
    run_id: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    execution: str | None = None,
) -> Iterator[Any]:
    """Start (or resume) a run; end it FINISHED, FAILED, or KILLED — never left RUNNING.

    ``execution`` (see :func:`execution_key`) names one stage execution: a retry of the
    same execution resumes the run its first attempt created instead of adding a second.
    The run records the process that runs it (:func:`process_tags`) so that
    :func:`reap_dead_runs` can tell a run whose process died from one still running.
    """
    import mlflow

    run = None
    if not run_id and execution:
        run_id = _run_of_execution(execution)
        if run_id:
            log.info("resuming MLflow run %s of stage execution %s", run_id, execution)
    if run_id:
        try:
            mlflow.MlflowClient().get_run(run_id)
            with _WRITE_CALLS:
                run = mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            log.warning("MLflow run %s not found in this store; starting a new run", run_id)
    with _WRITE_CALLS:
        if run is None:
            first = process_tags()
            if execution:
                first[EXECUTION_TAG] = execution
            run = mlflow.start_run(run_name=run_name, tags=first)
        else:
            mlflow.set_tags(process_tags())
        if tags:
            mlflow.set_tags(dict(tags))
            if contract.MODEL_TAG in tags and run_id is None:
                mlflow.set_tag("mlflow.note.content", run_description(dict(tags)))
    try:
        yield run
    except (KeyboardInterrupt, Terminated):
        _end_run("KILLED")
        raise
    except BaseException:
        _end_run("FAILED")
        raise
    _end_run("FINISHED")


def run_description(tags: Mapping[str, str]) -> str:
    """The run's description in the MLflow UI: which model, which stages, what to look at."""
    model, kind = tags.get(contract.MODEL_TAG, "?"), tags.get(contract.KIND_TAG, "?")
    if kind == "ensemble":
        return (
            f"Ensemble `{model}`: the mean of its members' scores (params model.members), "
            "built by the ensemble stage and evaluated in this run."
        )
    return (
        f"Model `{model}` ({kind}): trained by the train@{model} stage (curves per epoch), "
        f"evaluated in this run by evaluate@{model} (test_* and validation_* metrics, "
        "per-class report, the text-in model)."
    )


def _end_run(status: str) -> None:
    import mlflow

    with _WRITE_CALLS:
        mlflow.end_run(status=status)


def flat_params(prefix: str, values: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(flat_params(name, value))
        else:
            out[name] = "null" if value is None else str(value)
    return out


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    with _WRITE_CALLS:
        mlflow.log_params(dict(params))


# Many runs logging from one process (threads of a flow) would each hold one of the tracking
# server's database connections; a SQLite-backed server then exhausts its connection pool
# and answers errors. Per process, at most this many calls that write a run (start, tags,
# params, metrics, end) are in flight at once.
_WRITE_CALLS = threading.BoundedSemaphore(
    int(os.environ.get(contract.MAX_CONCURRENT_CALLS_ENV, "4"))
)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    with _WRITE_CALLS:
        mlflow.log_metrics(finite, step=step)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=artifact_path)
    elif path.exists():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def log_dataset(path: str | Path, digest: str | None, name: str, context: str) -> None:
    """Record the processed data as the run's input, with DVC's hash as its digest."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    source = resolve_dataset_source(str(Path(path).resolve()))
    dataset = MetaDataset(source=source, name=name, digest=(digest or "unknown")[:36])
    mlflow.log_input(dataset, context=context)


def epoch_logger():
    """A Keras callback that logs every epoch's metrics to the active run (step = epoch)."""
    import keras

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            log_metrics({k: v for k, v in (logs or {}).items()}, step=epoch + 1)

    return MlflowEpochLogger()


def active_run_id() -> str | None:
    import mlflow

    run = mlflow.active_run()
    return run.info.run_id if run else None


def run_url(run_id: str) -> str:
    import mlflow

    uri = mlflow.get_tracking_uri()
    run = mlflow.MlflowClient().get_run(run_id)
    if uri.startswith("http"):
        # MLflow 3's UI picks its GenAI or model-training view from the URL (else from the
        # browser's last choice, GenAI at first), not from the experiment's kind tag; its
        # own links keep the choice, so the experiment reached from this run opens as runs.
        return (
            f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
            "?workflowType=machine_learning"
        )
    return f"{uri} experiment {run.info.experiment_id} run {run_id}"


def run_info(run_id: str) -> dict:
    import mlflow

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(
            f"MLflow run {run_id} not found at {mlflow.get_tracking_uri()}: {exc}"
        ) from None
    return {
        "tags": dict(run.data.tags),
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "status": run.info.status,
    }


def run_status(run_id: str) -> str:
    import mlflow

    try:
        return mlflow.MlflowClient().get_run(run_id).info.status
    except mlflow.exceptions.MlflowException:
        return "MISSING"


def run_params(run_id: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient().get_run(run_id).data.params)


def log_run_text(run_id: str, text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.MlflowClient().log_text(run_id, text, artifact_file)


def log_files_to_runs(
    run_ids: list[str], paths: list[str | Path], artifact_path: str | None = None
) -> list[str]:
    """Log the same files (or directories) as artifacts of each run; return the runs logged to.

    Runs that this store does not hold are skipped with a warning.
    """
    import mlflow

    client = mlflow.MlflowClient()
    logged = []
    for run_id in dict.fromkeys(run_ids):
        try:
            client.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            log.warning("MLflow run %s not found; report not logged to it", run_id)
            continue
        for path in map(Path, paths):
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path)
            elif path.exists():
                client.log_artifact(run_id, str(path), artifact_path)
        logged.append(run_id)
    return logged


def start_parent_run(
    experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
) -> str:
    """Create a RUNNING run that child runs link to (tag ``mlflow.parentRunId``)."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    run = client.create_run(
        exp.experiment_id, run_name=run_name, tags={**process_tags(), **dict(tags)}
    )
    for key, value in params.items():
        client.log_param(run.info.run_id, key, str(value)[:6000])
    return run.info.run_id


def finish_parent_run(
    run_id: str,
    table: Mapping[str, list],
    markdown: str,
    metrics: Mapping[str, float] | None = None,
    status: str | None = "FINISHED",
) -> None:
    """Log the summary table (``sweep_summary.json``) and report, then end the run.

    ``status=None`` leaves the run open (a study logs its report to it afterwards).
    """
    import mlflow

    client = mlflow.MlflowClient()
    client.log_table(run_id, dict(table), "sweep_summary.json")
    client.log_text(run_id, markdown, "sweep_summary.md")
    for key, value in (metrics or {}).items():
        if value is not None and math.isfinite(float(value)):
            client.log_metric(run_id, key, float(value))
    if status is not None:
        client.set_terminated(run_id, status=status)


def find_run(experiment: str, key: str, value: str) -> str | None:
    """The newest run of ``experiment`` tagged ``key = value`` (None when there is none)."""
    runs = _search_tagged(key, value, experiment)
    return max(runs, key=lambda r: r.info.start_time).info.run_id if runs else None


def reopen_run(run_id: str) -> None:
    """Mark an ended run RUNNING again: a resumed study logs its new points under it."""
    import mlflow

    mlflow.MlflowClient().update_run(run_id, status="RUNNING")


def end_run(run_id: str, status: str = "FINISHED") -> None:
    import mlflow

    mlflow.MlflowClient().set_terminated(run_id, status=status)


def _search_tagged(key: str, value: str, experiment: str) -> list:
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`{key}` = '{value}'")


def _run_summary(run) -> dict:
    """A run's id, model, status, and its test and validation metrics by bare name."""
    metrics = run.data.metrics
    return {
        "run_id": run.info.run_id,
        "model": run.data.tags.get(contract.MODEL_TAG, run.info.run_name),
        "status": run.info.status,
        "metrics": {k[len("test_") :]: v for k, v in metrics.items() if k.startswith("test_")},
        "validation": {
            k[len("validation_") :]: v for k, v in metrics.items() if k.startswith("validation_")
        },
    }


def runs_of_sweep(sweep_id: str, experiment: str) -> list[dict]:
    """Child runs of a sweep (tag ``rnnops.sweep_id``), with params, test metrics and experiment."""
    return [
        {
            **_run_summary(r),
            "model": r.data.tags.get(contract.MODEL_TAG),
            "experiment": r.data.tags.get("rnnops.dvc.experiment"),
            "parent": r.data.tags.get("mlflow.parentRunId"),
            "params": dict(r.data.params),
        }
        for r in _search_tagged(contract.SWEEP_ID_TAG, sweep_id, experiment)
        if r.data.tags.get("rnnops.sweep_role") != "parent"
    ]


def runs_tagged(key: str, value: str, experiment: str) -> list[dict]:
    """Runs of ``experiment`` carrying tag ``key=value`` (e.g. one Prefect flow run's runs)."""
    return [
        {**_run_summary(r), "url": run_url(r.info.run_id)}
        for r in _search_tagged(key, value, experiment)
    ]
