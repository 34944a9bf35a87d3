"""The RNN-vs-LSTM study: a study file's points run through the sweep flow, then reported.

Each point (a task, a seed, a probe, the cells as models) is an isolated DVC experiment
run by :func:`flows.sweep.sweep_flow` under one MLflow parent run tagged with the study's
id. A rerun on the same commit reads finished points back instead of retraining them and
reruns only the ones that failed; the parent run is reopened, so it holds every point.
The report (``reports/study.md`` and ``.html``, figures, ``results.json``) goes to the
parent run's ``study/`` artifacts and into a Prefect artifact.

    python -m flows.study study.yaml [--quick]        # or: rnnops study [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.sweep import sweep_flow
from rnnops.core import contract
from rnnops.core.config import ConfigError, load_params
from rnnops.core.study_plan import STANDARD_PROBE, StudyPlan, parse_study, plan_study
from rnnops.stages.study import (
    POINT_OUTPUTS,
    collect_point,
    quartile_edges,
    svm_baseline,
    write_study_report,
)
from rnnops.systems import dvc_experiments, tracking

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPORT_MD, REPORT_HTML, REPORT_DIR = "reports/study.md", "reports/study.html", "reports/study"


def load_plan(root: Path, study_path: str, params_path: str, quick: bool) -> StudyPlan:
    """The study file and params.yaml validated together, before anything runs."""
    path = root / study_path
    if not path.exists():
        raise ConfigError(f"study file {path} not found (pass its path, e.g. study.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{study_path} is not valid YAML: {exc}") from None
    load_params(root / params_path)
    params_raw = yaml.safe_load((root / params_path).read_text())
    return plan_study(parse_study(raw, study_path), params_raw, quick)


def study_meta(plan: StudyPlan, rows: list[dict]) -> dict[str, Any]:
    kinds = {r["task"]: r["task_kind"] for r in rows}
    cells = {
        m.name: m.config
        for p in plan.points
        if p.group == "cells"
        for m in p.models
        if m.role == "cell"
    }
    probes = {
        p.probe: dict(plan.study.probes[p.probe].preprocess)
        for p in plan.points
        if p.probe != STANDARD_PROBE
    }
    return {
        "tasks": {t: kinds[t] for t in dict.fromkeys(p.task for p in plan.points) if t in kinds},
        "cells": cells,
        "probes": probes,
        "budget": plan.study.budget,
        "points": len(plan.points),
        "quartile_edges": quartile_edges(rows),
    }


def study_parent_run(plan: StudyPlan, params, root: Path, study_path: str, quick: bool) -> str:
    """The study's MLflow parent run: the one a previous run of this plan left, reopened."""
    logger = get_run_logger()
    parent = tracking.find_run(params.tracking.experiment, contract.STUDY_ID_TAG, plan.study_id)
    if parent:
        tracking.reopen_run(parent)
        logger.info("resuming into MLflow parent run %s", parent)
        return parent
    return tracking.start_parent_run(
        params.tracking.experiment,
        plan.study_id,
        {
            **tracking.lineage_tags(None, root),
            contract.STUDY_ID_TAG: plan.study_id,
            contract.SWEEP_ID_TAG: plan.study_id,
            "rnnops.sweep_role": "parent",
        },
        {"study_file": study_path, "quick": quick, "points": len(plan.points)},
    )


def collect(plan: StudyPlan, root: Path, status: dict[str, dict]) -> tuple[list[dict], dict]:
    """Rows of every completed point, read from its experiment; the SVM once per task."""
    logger = get_run_logger()
    rows: list[dict] = []
    baselines: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rnnops-study-") as tmp:
        for i, point in enumerate(plan.points):
            if status.get(point.name, {}).get("status") != "completed":
                continue
            workdir = Path(tmp) / str(i)
            dvc_experiments.fetch_experiment_outputs(root, point.name, POINT_OUTPUTS, workdir)
            rows += collect_point(point, workdir)
            if point.group == "cells" and point.task not in baselines:
                baselines[point.task] = svm_baseline(workdir)
            logger.info("collected point %d of %d (%s)", i + 1, len(plan.points), point.name)
    return rows, baselines


def publish(plan: StudyPlan, rows, baselines, meta, root: Path, parent: str) -> dict[str, Path]:
    """The report written, logged to the parent run, and its answers as a Prefect artifact."""
    written = write_study_report(
        plan, rows, baselines, meta, root / REPORT_MD, root / REPORT_HTML, root / REPORT_DIR
    )
    tracking.log_files_to_runs([parent], [written["markdown"], written["html"]], "study")
    tracking.log_files_to_runs([parent], [root / REPORT_DIR], "study")
    answers = written["markdown"].read_text().split("## Results per task")[0]
    create_markdown_artifact(
        key="study-report",
        markdown=answers
        + f"\nFull report: `{REPORT_HTML}`; MLflow parent run `{parent}` (artifacts `study/`).\n",
        description=f"Study {plan.study_id}: the answers",
    )
    return written


@flow(name="study", log_prints=True, persist_result=False)
def study_flow(
    study_path: str = "study.yaml",
    quick: bool = False,
    project_dir: str | None = None,
    params_path: str = "params.yaml",
    max_parallel: int | None = None,
) -> dict[str, Any]:
    """Run the study's unfinished points, collect every finished one, write the report."""
    logger = get_run_logger()
    root = Path(project_dir or os.getcwd()).resolve()
    plan = load_plan(root, study_path, params_path, quick)
    params = load_params(root / params_path)
    finished = sum(1 for p in plan.points if dvc_experiments.finished_experiment(root, p.name))
    logger.info(
        "study %s: %d points, %d already finished on this commit, %d to train",
        *(plan.study_id, len(plan.points), finished, len(plan.points) - finished),
    )
    uri = tracking.resolve_tracking_uri(params.tracking.uri, root)
    tracking.ensure_store(uri)
    tracking.configure(uri, params.tracking.experiment)
    parent = study_parent_run(plan, params, root, study_path, quick)
    swept = sweep_flow(
        [p.overrides for p in plan.points],
        max_parallel=max_parallel or plan.study.max_parallel,
        promote=False,
        project_dir=str(root),
        params_path=params_path,
        sweep_id=plan.study_id,
        point_names=[p.name for p in plan.points],
        reuse_finished=True,
        parent_run_id=parent,
        return_state=True,
    )
    outcome = swept.result(raise_on_failure=False) if swept.is_completed() else None
    status = {r["experiment"]: r for r in (outcome or {}).get("points", [])}
    rows, baselines = collect(plan, root, status)
    done = {n for n, r in status.items() if r["status"] == "completed"}
    failed = [p.name for p in plan.points if p.name not in done]
    meta = {
        **study_meta(plan, rows),
        "reused": sum(1 for r in status.values() if r.get("reused")),
        "trained": len(done) - sum(1 for r in status.values() if r.get("reused")),
        "failed": len(failed),
    }
    written = publish(plan, rows, baselines, meta, root, parent) if rows else {}
    tracking.end_run(parent, "FAILED" if failed else "FINISHED")
    for name in failed:
        logger.error("point %s did not finish; rerun the study to retry it alone", name)
    points = [
        {"name": p.name, **{k: v for k, v in status.get(p.name, {}).items() if k != "overrides"}}
        for p in plan.points
    ]
    return {
        "study_id": plan.study_id,
        "parent_run_id": parent,
        "points": points,
        "failed": failed,
        "rows": len(rows),
        "report": {k: str(v) for k, v in written.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.study",
        description="Run the RNN-vs-LSTM study: its points as DVC experiments, then its report.",
    )
    parser.add_argument("study", nargs="?", default="study.yaml", help="the study file")
    parser.add_argument("--quick", action="store_true", help="the study file's quick form")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project-dir", default=None)
    parser.add_argument("--max-parallel", type=int, default=None)
    args = parser.parse_args(argv)
    root = Path(args.project_dir or os.getcwd()).resolve()
    try:  # a bad study file stops here, before Prefect or DVC start
        plan = load_plan(root, args.study, args.params, args.quick)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"study {plan.study_id}: {len(plan.points)} points")
    state = study_flow(
        args.study,
        quick=args.quick,
        project_dir=args.project_dir,
        params_path=args.params,
        max_parallel=args.max_parallel,
        return_state=True,
    )
    if not state.is_completed():
        print(f"study flow {state.type.value}: {state.message}")
        return 1
    result = state.result()
    print(f"report: {result['report'].get('html', 'none (no point finished)')}")
    print(f"MLflow parent run: {result['parent_run_id']}")
    if result["failed"]:
        print(f"{len(result['failed'])} point(s) failed; rerun to retry only those")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
