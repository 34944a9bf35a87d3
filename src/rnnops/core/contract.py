"""How the flows talk to the stages, and the MLflow tag keys more than one module uses.

A flow runs each stage as its own process (``dvc repro`` / ``dvc exp run``), so what it
tells a stage travels in environment variables, and what a stage leaves for others to find
travels in MLflow tags. Each name is defined once, here, with who writes it and who reads it.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- environment

# Written by flows.stage_tasks.links_env (the Prefect flow run); read by
# tracking.lineage_tags, which tags every run of the stage with it, and by the flow's report
# to find its runs.
PREFECT_FLOW_RUN_ID_ENV = "RNNOPS_PREFECT_FLOW_RUN_ID"
# Written by flows.stage_tasks.links_env when a Prefect UI exists; read by tracking.lineage_tags.
PREFECT_FLOW_RUN_URL_ENV = "RNNOPS_PREFECT_FLOW_RUN_URL"
# Written by flows.stage_tasks.links_env for deployment runs; read by tracking.lineage_tags.
PREFECT_DEPLOYMENT_ENV = "RNNOPS_PREFECT_DEPLOYMENT"
# Written by flows.stage_tasks.execution_env (the Prefect task run id, the same on every
# retry); read by tracking.execution_key, so a retried stage resumes the MLflow run of its first attempt.
STAGE_EXECUTION_ENV = "RNNOPS_STAGE_EXECUTION"
# Written by flows.stage_tasks.sweep_env for one sweep point; read by tracking.lineage_tags.
SWEEP_ID_ENV = "RNNOPS_SWEEP_ID"
SWEEP_POINT_ENV = "RNNOPS_SWEEP_POINT"
# Written by flows.stage_tasks.sweep_env: the sweep's parent MLflow run; read by
# tracking.lineage_tags (as mlflow.parentRunId, so the UI nests the point's runs).
PARENT_RUN_ID_ENV = "RNNOPS_PARENT_RUN_ID"
# Written by flows.stage_tasks.sweep_env ("record"); read by promote: a sweep point's promote
# stage only records its candidate, the sweep promotes its best point once.
PROMOTE_MODE_ENV = "RNNOPS_PROMOTE_MODE"
# Written by reproduce.reproduce_run: the run being reproduced; read by tracking.lineage_tags.
REPRODUCES_ENV = "RNNOPS_REPRODUCES"
# Set by the user (default 4); read by tracking: MLflow write calls in flight per process.
MAX_CONCURRENT_CALLS_ENV = "RNNOPS_MLFLOW_MAX_CONCURRENT_CALLS"
# Written by scripts/stack.py for each worker it starts; read by systems.worker_clone (where
# the worker keeps its own clone of the project).
WORKER_HOME_ENV = "RNNOPS_WORKER_HOME"
# Written by scripts/stack.py (the S3 endpoint of a bucket that is not AWS's); read by
# systems.worker_clone to point a worker's DVC remote at it.
S3_ENDPOINT_ENV = "S3_ENDPOINT_URL"
# Written by scripts/stack.py (the bucket's DVC remote, s3://...); read by
# systems.worker_clone: a worker's clone pulls from and pushes to it.
DVC_REMOTE_ENV = "DVC_REMOTE_URL"
# Set by the user; read by flows.deployments: the schedules and the Late-run policy.
RETRAIN_CRON_ENV = "RNNOPS_RETRAIN_CRON"
BATCH_INTERVAL_MINUTES_ENV = "RNNOPS_BATCH_INTERVAL_MINUTES"
MAX_LATENESS_MINUTES_ENV = "RNNOPS_MAX_LATENESS_MINUTES"

# --------------------------------------------------------------------------- MLflow tags

# Written by the train, evaluate and ensemble commands (rnnops.apps.commands); read by promote, the
# sweep and the flow's report to tell models apart.
MODEL_TAG = "rnnops.model"
KIND_TAG = "rnnops.kind"
STAGE_TAG = "rnnops.stage"
# Written by tracking.stage_run; read by tracking to resume the run of a retried stage.
STAGE_EXECUTION_TAG = "rnnops.stage_execution"
# Written by tracking.lineage_tags; read by reproduce (which data to restore).
DATA_HASH_TAG = "rnnops.data.hash"
# Written by tracking.lineage_tags from the environment above; read by the flows.
PREFECT_FLOW_RUN_ID_TAG = "prefect.flow_run_id"
PREFECT_FLOW_RUN_URL_TAG = "prefect.flow_run_url"
PREFECT_DEPLOYMENT_TAG = "prefect.deployment"
SWEEP_ID_TAG = "rnnops.sweep_id"
SWEEP_POINT_TAG = "rnnops.sweep_point"
REPRODUCES_TAG = "rnnops.reproduces"
# Written by the study flow on its parent run; read by the study flow to resume into it.
STUDY_ID_TAG = "rnnops.study_id"
# Written by promote on a registered version; read by tracking.versions_of_runs (reports).
PROMOTION_DECISION_TAG = "promotion.decision"
PROMOTION_REASON_TAG = "promotion.reason"

# Each variable the flows pass to a stage, and the tag the stage's runs carry it as.
ENV_TAGS = (
    (PREFECT_FLOW_RUN_ID_ENV, PREFECT_FLOW_RUN_ID_TAG),
    (PREFECT_FLOW_RUN_URL_ENV, PREFECT_FLOW_RUN_URL_TAG),
    (PREFECT_DEPLOYMENT_ENV, PREFECT_DEPLOYMENT_TAG),
    (SWEEP_ID_ENV, SWEEP_ID_TAG),
    (SWEEP_POINT_ENV, SWEEP_POINT_TAG),
    (PARENT_RUN_ID_ENV, "mlflow.parentRunId"),
    (REPRODUCES_ENV, REPRODUCES_TAG),
)
