"""Deployments: nightly retraining (cron) and batch scoring (interval).

Serve both from this machine (a temporary local API unless PREFECT_API_URL points
at a Prefect server):

    python -m flows.deployments                      # make serve-flows

For several machines, deploy the same flows to a work pool and start workers
there; see the README ("Scheduled runs and workers").
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.batch_score import batch_score_flow
from flows.training import training_flow
from rnnops.core import contract

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

RETRAIN_CRON = os.environ.get(contract.RETRAIN_CRON_ENV, "0 2 * * *")  # 02:00 UTC
BATCH_INTERVAL_MINUTES = float(os.environ.get(contract.BATCH_INTERVAL_MINUTES_ENV, "60"))
MAX_LATENESS_MINUTES = float(os.environ.get(contract.MAX_LATENESS_MINUTES_ENV, "360"))
ZOMBIE_AUTOMATION = "rnnops: crash flow runs that stopped sending heartbeats"
# A served flow run sends a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds
# (Prefect's default: 180); a run silent for this many heartbeats is marked Crashed.
MISSED_HEARTBEATS = 3


def ensure_zombie_automation(heartbeat_seconds: int | None = None):
    """Create (once, by name) the automation that marks dead flow runs Crashed.

    A flow run whose process is SIGKILLed (or whose machine is lost) never reports its
    end and would stay Running; Prefect's server marks it Crashed only through an
    automation on missing heartbeats, which a self-hosted server does not have by default.
    """
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.settings import get_current_settings

    try:
        return Automation.read(name=ZOMBIE_AUTOMATION)
    except ValueError:
        pass
    every = heartbeat_seconds or get_current_settings().flows.heartbeat_frequency or 180
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description=f"No heartbeat for {MISSED_HEARTBEATS} x {every} s: the flow run's "
        "process is gone; mark it Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=MISSED_HEARTBEATS * every),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {MISSED_HEARTBEATS * every} s: the process running "
                "this flow is gone",
            )
        ],
    ).create()


def deploy_sweep_point(
    git_remote: str, branch: str = "main", work_pool: str = "rnnops", name: str = "sweep-point"
) -> str:
    """The training flow as a deployment whose code each worker clones from ``git_remote``.

    Sweeps dispatch their points to it (``--deployment training/sweep-point --git-remote
    URL``); returns the deployment's full name.
    """
    from prefect.runner.storage import GitRepository

    training_flow.from_source(
        source=GitRepository(url=git_remote, branch=branch),
        entrypoint="flows/training.py:training_flow",
    ).deploy(name=name, work_pool_name=work_pool)
    return f"training/{name}"


def deploy_pipeline_stages(
    git_remote: str, branch: str = "main", work_pool: str = "rnnops", name: str = "team"
) -> str:
    """The pipeline-stages flow (:mod:`flows.team`) as a deployment the workers clone.

    Workspace runs send each model's stages to it (``python -m flows.training
    --git-remote URL --stage-deployment pipeline-stages/team``); returns its full name.
    """
    from prefect.runner.storage import GitRepository

    from flows.team import pipeline_stages_flow

    pipeline_stages_flow.from_source(
        source=GitRepository(url=git_remote, branch=branch),
        entrypoint="flows/team.py:pipeline_stages_flow",
    ).deploy(name=name, work_pool_name=work_pool)
    return f"pipeline-stages/{name}"


def build_deployments(
    project_dir: str,
    retrain_cron: str = RETRAIN_CRON,
    batch_interval_minutes: float = BATCH_INTERVAL_MINUTES,
    batch_input: str = "data/incoming/documents.csv",
    batch_output: str = "data/scored/documents.parquet",
    paused: bool = False,
):
    root = Path(project_dir).resolve()
    retrain = training_flow.to_deployment(
        name="nightly-retrain",
        cron=retrain_cron,
        # Late-run policy: a nightly run that starts more than MAX_LATENESS_MINUTES late
        # (nothing served it on time) skips itself; the next night's run does the work.
        parameters={
            "project_dir": str(root),
            "push": True,
            "max_lateness_minutes": MAX_LATENESS_MINUTES,
        },
        # One retraining at a time: a run that would overlap waits its turn.
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        description="Reproduce the DVC pipeline (skips when nothing changed), track in MLflow, promote.",
        tags=["rnnops", "training"],
        paused=paused,
    )
    score = batch_score_flow.to_deployment(
        name="batch-score",
        interval=timedelta(minutes=batch_interval_minutes),
        parameters={
            "input_path": str(root / batch_input),
            "output_path": str(root / batch_output),
            "params_path": str(root / "params.yaml"),
            "progress": False,
        },
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
        description="Score new documents with the champion; record the model version that scored them.",
        tags=["rnnops", "scoring"],
        paused=paused,
    )
    return [retrain, score]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flows.deployments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--project-dir", default=os.getcwd())
    parser.add_argument(
        "--retrain-cron", default=RETRAIN_CRON, help="cron (UTC) of nightly-retrain"
    )
    parser.add_argument("--batch-interval-minutes", type=float, default=BATCH_INTERVAL_MINUTES)
    parser.add_argument("--batch-input", default="data/incoming/documents.csv")
    parser.add_argument("--batch-output", default="data/scored/documents.parquet")
    args = parser.parse_args(argv)
    ensure_zombie_automation()
    serve(
        *build_deployments(
            args.project_dir,
            args.retrain_cron,
            args.batch_interval_minutes,
            args.batch_input,
            args.batch_output,
        )
    )


if __name__ == "__main__":
    main()
