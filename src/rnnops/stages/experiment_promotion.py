"""A DVC experiment's outcome and its promotion: how a sweep reads and promotes its points.

A point of a sweep is a DVC experiment whose promote stage only recorded its candidate.
Its outcome is read back from the experiment's commit; the sweep's single best point is
sent through :func:`rnnops.stages.promote.run_promote` on the experiment's own outputs,
fetched from git and the DVC cache.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from rnnops.core.config import load_params, parse_params
from rnnops.systems import dvc_experiments

# What the promote stage reads, besides params.yaml.
PROMOTE_INPUTS = ["metrics", "reports/eval", "data/processed", "data/raw/reuters.parquet"]


def experiment_outcome(root: str | Path, name: str, metric: str) -> dict[str, Any]:
    """What a finished point's experiment committed: its best model, score and metrics."""
    from rnnops.stages.promote import Candidate, best_candidate, selection_score

    files = dvc_experiments.experiment_files(root, name)
    params = parse_params(yaml.safe_load(files.read_text("params.yaml")), f"experiment {name}")
    metrics = {m: json.loads(files.read_text(f"metrics/{m}.json")) for m in params.candidates}
    # The same choice as the promote stage (rnnops.stages.promote.best_candidate).
    cand = best_candidate(
        [Candidate(m, "", "", None, vals) for m, vals in metrics.items()], metric
    ).name
    run = json.loads(files.read_text(f"reports/eval/{cand}/mlflow.json"))
    return {
        "candidate": cand,
        "candidate_run_id": run["run_id"],
        "score": selection_score(metrics[cand], metric),
        "metrics": {
            f"{m}.{k}": v
            for m, vals in metrics.items()
            for k, v in vals.items()
            if k in ("accuracy", "micro_f1", "macro_f1")
        },
    }


def promote_experiment(root: Path, name: str, params_path: Path, workdir: Path) -> dict[str, Any]:
    """Send experiment ``name`` through the promotion gate of the sweep's own params."""
    from rnnops.stages.promote import run_promote

    base = load_params(params_path)
    dvc_experiments.fetch_experiment_outputs(root, name, [*PROMOTE_INPUTS, "params.yaml"], workdir)
    point = load_params(workdir / "params.yaml")
    decision = run_promote(
        point.candidates,
        base.promotion,  # the sweep's gate: same metric, margin and registered model
        workdir / "metrics",
        workdir / "reports" / "eval",
        workdir / "data" / "processed",
        workdir / "data" / "raw" / "reuters.parquet",
        workdir / "promotion.json",
    )
    return asdict(decision)
