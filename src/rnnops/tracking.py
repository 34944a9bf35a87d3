"""Everything that talks to MLflow: tracking, lineage, the text-in model, the registry.

Stages call these functions; nothing else in the package imports mlflow. The
tracking URI is resolved when a stage configures tracking, never at import.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from rnnops import contract

log = logging.getLogger(__name__)

EXP_TMP_MARKER = f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}"
STORE_FILE = "mlflow.db"
RESERVED_ALIASES = ("latest",)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so that open runs end as KILLED."""


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused an operation."""


# --------------------------------------------------------------------------- setup


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
    """An exclusive lock on ``path`` (:func:`rnnops.locks.hold`), bounded in time."""
    from rnnops.locks import LockTimeout, acquire, release

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

    from rnnops.store_check import check_store

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
    # MLflow 3 opens an experiment without this tag in its GenAI (traces) view.
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


# --------------------------------------------------------------------------- lineage


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(root: Path) -> str | None:
    """The commit checked out at ``root`` (None outside git)."""
    return _git(Path(root), "rev-parse", "HEAD")


def dvc_locked_hash(stage: str, out_path: str, cwd: Path | None = None) -> str | None:
    """The hash DVC recorded in ``dvc.lock`` for ``out_path`` of ``stage``."""
    lock = Path(cwd or os.getcwd()) / "dvc.lock"
    if not lock.exists():
        return None
    data = yaml.safe_load(lock.read_text()) or {}
    for out in (data.get("stages", {}).get(stage, {}) or {}).get("outs", []):
        if out.get("path") == out_path:
            return out.get("md5") or out.get("hash")
    return None


def lineage_tags(data_hash: str | None, cwd: Path | None = None) -> dict[str, str]:
    from rnnops import __version__

    cwd = Path(cwd or os.getcwd())
    commit = _git(cwd, "rev-parse", "HEAD")
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    tags = {
        "mlflow.source.git.commit": commit or "unknown",
        "rnnops.git.commit": commit or "unknown",
        "rnnops.git.dirty": "unknown" if status is None else str(bool(status)).lower(),
        contract.DATA_HASH_TAG: data_hash or "unknown",
        "rnnops.version": __version__,
        "rnnops.host": platform.node(),
        "rnnops.project_root": str(project_root(cwd)),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["rnnops.dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    for env, tag in contract.ENV_TAGS:
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


# --------------------------------------------------------------------------- runs


# --------------------------------------------------------------------------- process identity

PID_TAG, HOST_TAG, STARTED_TAG = "rnnops.pid", "rnnops.host", "rnnops.pid_started"
EXECUTION_TAG = contract.STAGE_EXECUTION_TAG
EXECUTION_ENV = contract.STAGE_EXECUTION_ENV


def process_started(pid: int) -> str | None:
    """When process ``pid`` started (seconds since the epoch, rounded), or None if it is gone.

    A pid alone can be reused by an unrelated process; the pair (pid, start time) cannot.
    """
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def process_tags(pid: int | None = None) -> dict[str, str]:
    """Tags that tell whether the process running a run is still alive."""
    pid = pid or os.getpid()
    return {
        PID_TAG: str(pid),
        HOST_TAG: platform.node(),
        STARTED_TAG: process_started(pid) or "unknown",
    }


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
        return f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    return f"{uri} experiment {run.info.experiment_id} run {run_id}"


# --------------------------------------------------------------------------- the text-in model


def _pyfunc_class():
    import mlflow.pyfunc

    class TopicModel(mlflow.pyfunc.PythonModel):
        """Raw news text in (a ``text`` column), topics with scores out."""

        def load_context(self, context):
            from rnnops.predictor import TopicPredictor

            self.predictor = TopicPredictor.from_files(
                Path(context.artifacts["keras_model"]),
                Path(context.artifacts["vocab"]),
                Path(context.artifacts["decision"]),
            )

        def predict(self, context, model_input, params=None):
            import pandas as pd

            if isinstance(model_input, pd.DataFrame):
                texts = model_input["text"].astype(str).tolist()
            else:
                texts = [str(t) for t in model_input]
            return self.predictor.predict(texts)

    return TopicModel


def log_text_model(
    keras_path: Path, vocab_path: Path, decision_path: Path, sample: list[str], name: str = "model"
) -> str:
    """Log the pyfunc that takes raw text under ``name`` (the model's); return its URI."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from rnnops import __version__
    from rnnops.predictor import TopicPredictor

    predictor = TopicPredictor.from_files(keras_path, vocab_path, decision_path)
    example_in = pd.DataFrame({"text": sample})
    signature = infer_signature(example_in, predictor.predict(sample))
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=_pyfunc_class()(),
        artifacts={
            "keras_model": str(keras_path),
            "vocab": str(vocab_path),
            "decision": str(decision_path),
        },
        signature=signature,
        input_example=example_in,
        pip_requirements=[f"rnnops=={__version__}"],
    )
    return info.model_uri


def load_text_model(uri: str):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(uri)


# --------------------------------------------------------------------------- registry


def get_alias_version(name: str, alias: str):
    import mlflow

    client = mlflow.MlflowClient()
    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def register_version(model_uri: str, name: str, tags: Mapping[str, str]) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            client.create_registered_model(
                name, description="Reuters topic classifier: raw text in, topics out."
            )
    version = mlflow.register_model(model_uri, name, tags=dict(tags))
    return str(version.version)


def set_alias(name: str, alias: str, version: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    if alias.lower() in RESERVED_ALIASES or (alias.lower().startswith("v") and alias[1:].isdigit()):
        raise TrackingError(
            f"alias {alias!r} is reserved by MLflow; use another name (e.g. champion)"
        )
    try:
        client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        raise TrackingError(
            f"model {name!r} has no version {version}; nothing was changed"
        ) from None
    client.set_registered_model_alias(name, alias, version)


def set_version_tags(name: str, version: str, tags: Mapping[str, str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def describe_version(name: str, version: str, description: str) -> None:
    import mlflow

    mlflow.MlflowClient().update_model_version(name, version, description=description)


def version_info(name: str, version: str) -> dict:
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(name, version)
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "tags": dict(mv.tags),
        "aliases": list(mv.aliases),
    }


def current_tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


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
    status: str = "FINISHED",
) -> None:
    """Log the summary table (``sweep_summary.json``) and report, then end the run."""
    import mlflow

    client = mlflow.MlflowClient()
    client.log_table(run_id, dict(table), "sweep_summary.json")
    client.log_text(run_id, markdown, "sweep_summary.md")
    for key, value in (metrics or {}).items():
        if value is not None and math.isfinite(float(value)):
            client.log_metric(run_id, key, float(value))
    client.set_terminated(run_id, status=status)


def runs_of_sweep(sweep_id: str, experiment: str) -> list[dict]:
    """Child runs of a sweep (tag ``rnnops.sweep_id``), with params, test metrics and experiment."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    found = client.search_runs([exp.experiment_id], f"tags.`rnnops.sweep_id` = '{sweep_id}'")
    return [
        {
            "run_id": r.info.run_id,
            "model": r.data.tags.get(contract.MODEL_TAG),
            "experiment": r.data.tags.get("rnnops.dvc.experiment"),
            "parent": r.data.tags.get("mlflow.parentRunId"),
            "status": r.info.status,
            "params": dict(r.data.params),
            "metrics": {k[5:]: v for k, v in r.data.metrics.items() if k.startswith("test_")},
            "validation": {
                k[len("validation_") :]: v
                for k, v in r.data.metrics.items()
                if k.startswith("validation_")
            },
        }
        for r in found
        if r.data.tags.get("rnnops.sweep_role") != "parent"
    ]


def runs_tagged(key: str, value: str, experiment: str) -> list[dict]:
    """Runs of ``experiment`` carrying tag ``key=value`` (e.g. one Prefect flow run's runs)."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    found = client.search_runs([exp.experiment_id], f"tags.`{key}` = '{value}'")
    return [
        {
            "run_id": r.info.run_id,
            "model": r.data.tags.get(contract.MODEL_TAG, r.info.run_name),
            "status": r.info.status,
            "metrics": {k[5:]: v for k, v in r.data.metrics.items() if k.startswith("test_")},
            "validation": {
                k[len("validation_") :]: v
                for k, v in r.data.metrics.items()
                if k.startswith("validation_")
            },
            "url": run_url(r.info.run_id),
        }
        for r in found
    ]


def versions_of_runs(name: str, run_ids: list[str]) -> list[dict]:
    """Registered versions of ``name`` created from ``run_ids``, with aliases and decisions."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except mlflow.exceptions.MlflowException:
        return []
    # search_model_versions leaves `aliases` empty on some stores: read each version itself.
    found = [client.get_model_version(name, v.version) for v in versions if v.run_id in run_ids]
    return [
        {
            "version": str(v.version),
            "run_id": v.run_id,
            "aliases": sorted(v.aliases),
            "decision": v.tags.get(contract.PROMOTION_DECISION_TAG),
            "reason": v.tags.get(contract.PROMOTION_REASON_TAG),
        }
        for v in found
    ]


def registry_lock_path() -> Path:
    """Where promotions serialise: next to the SQLite store, else in the project."""
    import mlflow

    db = _sqlite_path(mlflow.get_tracking_uri())
    base = db.parent if db else project_root()
    return base / ".rnnops-promotion.lock"


# --------------------------------------------------------------------------- serving


class ModelNotFoundError(TrackingError):
    """The registry answered: no such model, version or alias (retrying cannot help)."""


def use_tracking_uri(configured: str | None) -> str:
    """Point MLflow at the store that models are read from (serving, batch scoring).

    Unlike :func:`configure` it creates neither a store nor an experiment.
    """
    import mlflow

    from rnnops.store_check import check_store

    uri = resolve_tracking_uri(configured)
    bounded_http_defaults()
    check_store(uri, must_exist=True)  # models are read, never a new store made to hold them
    mlflow.set_tracking_uri(uri)
    return uri


def resolve_model_version(model_uri: str) -> dict[str, str | None]:
    """The registered version behind ``models:/NAME@ALIAS`` or ``models:/NAME/N``.

    Returns ``name``, ``version``, ``run_id`` and ``uri``, a ``models:/NAME/N`` pinned to
    that version: loading the pinned URI means an alias that moves meanwhile cannot mix
    two versions. Other URIs (``runs:/``, paths) come back unchanged, without a version.
    """
    import mlflow

    if not model_uri.startswith("models:/"):
        return {"name": None, "version": None, "run_id": None, "uri": model_uri}
    store = mlflow.get_tracking_uri()
    db = _sqlite_path(store)
    if db is not None and not db.exists():
        raise ModelNotFoundError(
            f"no MLflow store at {db}: train and promote a model first (dvc repro), "
            "or point MLFLOW_TRACKING_URI at the store that holds it"
        )
    ref = model_uri[len("models:/") :].rstrip("/")
    client = mlflow.MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.rsplit("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = ref.rpartition("/")
            if not name or not version.isdigit():
                raise ModelNotFoundError(
                    f"model URI {model_uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION"
                )
            mv = client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelNotFoundError(
                f"{model_uri} not found in {store} ({exc.message}): run the pipeline to "
                "train and promote one (make run, or dvc repro), or point "
                "MLFLOW_TRACKING_URI at the store that holds it"
            ) from None
        raise TrackingError(f"could not read {model_uri} from {store}: {exc.message}") from None
    return {
        "name": mv.name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "uri": f"models:/{mv.name}/{mv.version}",
    }


# --------------------------------------------------------------------------- doctor


def _dead_reason(tags: Mapping[str, str], host: str) -> str | None:
    """Why a RUNNING run's process is known to be gone, or None when it may still run."""
    if tags.get(HOST_TAG) != host or not str(tags.get(PID_TAG, "")).isdigit():
        return None  # another machine's run, or one that did not record its process
    pid = int(tags[PID_TAG])
    started = process_started(pid)
    if started is None:
        return f"its process {pid} on {host} is gone"
    recorded = tags.get(STARTED_TAG)
    if recorded and recorded != "unknown" and abs(float(recorded) - float(started)) > 1.0:
        return f"its process {pid} on {host} is gone (the pid now belongs to another process)"
    return None


def reap_dead_runs(dry_run: bool = False) -> list[dict[str, str]]:
    """Mark KILLED the runs left RUNNING by a process of this host that no longer exists.

    A SIGKILL (or a lost machine) leaves nothing to end a run. Only runs that recorded
    their process (tags ``rnnops.pid``, ``rnnops.host``, ``rnnops.pid_started``) on this
    host are judged; runs of other hosts and of live processes are left alone.
    """
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient()
    host = platform.node()
    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    reaped = []
    if not exp_ids:
        return reaped
    for run in client.search_runs(exp_ids, "attributes.status = 'RUNNING'", max_results=10000):
        reason = _dead_reason(run.data.tags, host)
        if reason is None:
            continue
        if not dry_run:
            client.set_tag(run.info.run_id, "rnnops.doctor", f"marked KILLED: {reason}")
            client.set_terminated(run.info.run_id, status="KILLED")
        reaped.append(
            {"run_id": run.info.run_id, "name": run.info.run_name or "", "reason": reason}
        )
    return reaped


def doctor(uri: str, dry_run: bool = False) -> list[dict[str, str]]:
    """:func:`reap_dead_runs` on the store at ``uri`` (nothing to do if it does not exist)."""
    import mlflow

    from rnnops.store_check import check_store

    db = _sqlite_path(uri)
    if db is not None and not db.exists():
        return []
    check_store(uri)
    bounded_http_defaults()
    mlflow.set_tracking_uri(uri)
    return reap_dead_runs(dry_run=dry_run)
