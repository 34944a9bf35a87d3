"""Everything that talks to MLflow, one module per job.

- :mod:`~rnnops.systems.tracking.store`: which store, its creation and experiment, bounded HTTP;
- :mod:`~rnnops.systems.tracking.lineage`: git, DVC and Prefect lineage tags, the process identity;
- :mod:`~rnnops.systems.tracking.runs`: the run lifecycle, logging, queries of runs;
- :mod:`~rnnops.systems.tracking.text_model`: the text-in pyfunc model;
- :mod:`~rnnops.systems.tracking.registry`: versions, aliases, resolving ``models:/`` URIs;
- :mod:`~rnnops.systems.tracking.dead_runs`: runs left RUNNING by dead processes;
- :mod:`~rnnops.systems.tracking.stage_records`: what each stage logs of its inputs and outputs.

Stages call these through ``rnnops.systems.tracking``; nothing else in the package imports mlflow.
The tracking URI is resolved when a stage configures tracking, never at import.
"""

from __future__ import annotations

from rnnops.systems.tracking.dead_runs import (
    doctor,
    reap_dead_runs,
)
from rnnops.systems.tracking.lineage import (
    HOST_TAG,
    PID_TAG,
    STARTED_TAG,
    dvc_locked_hash,
    git_commit,
    lineage_tags,
    process_started,
    process_tags,
)
from rnnops.systems.tracking.registry import (
    ModelNotFoundError,
    describe_version,
    get_alias_version,
    register_version,
    registry_lock_path,
    resolve_model_version,
    set_alias,
    set_version_tags,
    version_info,
    versions_of_runs,
)
from rnnops.systems.tracking.runs import (
    EXECUTION_ENV,
    EXECUTION_TAG,
    active_run_id,
    epoch_logger,
    execution_key,
    finish_parent_run,
    flat_params,
    log_artifact,
    log_dataset,
    log_files_to_runs,
    log_metrics,
    log_params,
    log_run_text,
    log_text,
    run_description,
    run_info,
    run_params,
    run_status,
    run_url,
    runs_of_sweep,
    runs_tagged,
    stage_run,
    start_parent_run,
)
from rnnops.systems.tracking.stage_records import (
    record_ensemble_inputs,
    record_ensemble_outputs,
    record_evaluation,
    record_training_inputs,
    record_training_outputs,
)
from rnnops.systems.tracking.store import (
    EXP_TMP_MARKER,
    EXPERIMENT_TAGS,
    HTTP_DEFAULTS,
    RESERVED_ALIASES,
    STORE_FILE,
    Terminated,
    TrackingError,
    bounded_http_defaults,
    configure,
    current_tracking_uri,
    describe_experiment,
    ensure_store,
    file_lock,
    project_root,
    resolve_tracking_uri,
    use_tracking_uri,
)
from rnnops.systems.tracking.text_model import (
    load_text_model,
    log_text_model,
)

__all__ = [
    "EXECUTION_ENV",
    "EXECUTION_TAG",
    "EXPERIMENT_TAGS",
    "EXP_TMP_MARKER",
    "HOST_TAG",
    "HTTP_DEFAULTS",
    "PID_TAG",
    "RESERVED_ALIASES",
    "STARTED_TAG",
    "STORE_FILE",
    "ModelNotFoundError",
    "Terminated",
    "TrackingError",
    "active_run_id",
    "bounded_http_defaults",
    "configure",
    "current_tracking_uri",
    "describe_experiment",
    "describe_version",
    "doctor",
    "dvc_locked_hash",
    "ensure_store",
    "epoch_logger",
    "execution_key",
    "file_lock",
    "finish_parent_run",
    "flat_params",
    "get_alias_version",
    "git_commit",
    "lineage_tags",
    "load_text_model",
    "log_artifact",
    "log_dataset",
    "log_files_to_runs",
    "log_metrics",
    "log_params",
    "log_run_text",
    "log_text",
    "log_text_model",
    "process_started",
    "process_tags",
    "project_root",
    "reap_dead_runs",
    "record_ensemble_inputs",
    "record_ensemble_outputs",
    "record_evaluation",
    "record_training_inputs",
    "record_training_outputs",
    "register_version",
    "registry_lock_path",
    "resolve_model_version",
    "resolve_tracking_uri",
    "run_description",
    "run_info",
    "run_params",
    "run_status",
    "run_url",
    "runs_of_sweep",
    "runs_tagged",
    "set_alias",
    "set_version_tags",
    "stage_run",
    "start_parent_run",
    "use_tracking_uri",
    "version_info",
    "versions_of_runs",
]
