"""reproduce: re-run a tracked model from its recorded commit, data and params.

Checks the recorded git commit out into a fresh worktree, restores the processed
data with DVC (checkout from the cache, else recompute it), re-trains and
re-evaluates the model with the params recorded on the run, and reports whether
the test metrics match.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnops.core import contract
from rnnops.core.io import read_json
from rnnops.core.overrides import apply_overrides

log = logging.getLogger(__name__)


class ReproduceError(RuntimeError):
    """The run cannot be reproduced (missing lineage, commit or data)."""


@dataclass
class Reproduction:
    run_id: str
    model: str
    commit: str
    data_hash_recorded: str
    data_hash_now: str | None
    metrics_recorded: dict
    metrics_now: dict
    matches: bool
    differences: dict = field(default_factory=dict)


def recorded_overrides(params: dict[str, str], model: str) -> dict:
    """Params logged as strings back to typed ``params.yaml`` overrides."""
    overrides = {}
    for key, value in params.items():
        if key.startswith("model.") and key != "model.name":
            overrides[f"models.{model}.{key[len('model.') :]}"] = yaml.safe_load(value)
        elif key.startswith("data."):
            overrides[f"preprocess.{key[len('data.') :]}"] = yaml.safe_load(value)
        elif key.startswith("pretrain."):
            overrides[key] = yaml.safe_load(value)
    return overrides


def compare_metrics(recorded: dict, now: dict, tolerance: float) -> dict:
    diffs = {}
    for key, old in recorded.items():
        new = now.get(key)
        if new is None or not math.isclose(old, new, rel_tol=0, abs_tol=tolerance):
            diffs[key] = {"recorded": old, "reproduced": new}
    return diffs


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    log.info("$ %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise ReproduceError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return proc


def reproduce_run(
    run_id: str, root: Path, tolerance: float = 1e-6, keep: bool = False
) -> Reproduction:
    from rnnops.systems import tracking

    info = tracking.run_info(run_id)
    tags, params = info["tags"], info["params"]
    model, commit, recorded = _recorded_lineage(run_id, tags, info["metrics"])
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking.current_tracking_uri(),
        contract.REPRODUCES_ENV: run_id,
    }
    work = Path(tempfile.mkdtemp(prefix=f"rnnops-reproduce-{run_id[:8]}-"))
    tree = work / "tree"
    try:
        _run(["git", "worktree", "add", "--detach", str(tree), commit], root, env)
        dvc = str(bin_dir / "dvc")
        cache = root / ".dvc" / "cache"
        if cache.exists():
            _run([dvc, "cache", "dir", "--local", str(cache)], tree, env)
        params_path = tree / "params.yaml"
        raw = apply_overrides(
            yaml.safe_load(params_path.read_text()), recorded_overrides(params, model)
        )
        params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        uses_word2vec = (raw["models"][model].get("embedding_init") or "random") == "word2vec"
        _restore_processed(tree, dvc, env, commit)
        now_hash = tracking.dvc_locked_hash("preprocess", "data/processed", tree)
        pretrained = _restore_pretrained(tree, dvc, env) if uses_word2vec else []
        now = _retrain(tree, work / "out", model, pretrained, env)
        diffs = compare_metrics(recorded, {k: now[k] for k in recorded if k in now}, tolerance)
        return Reproduction(
            run_id=run_id,
            model=model,
            commit=commit,
            data_hash_recorded=tags.get(contract.DATA_HASH_TAG, "unknown"),
            data_hash_now=now_hash,
            metrics_recorded=recorded,
            metrics_now={k: now.get(k) for k in recorded},
            matches=not diffs
            and (now_hash is None or now_hash == tags.get(contract.DATA_HASH_TAG)),
            differences=diffs,
        )
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True
        )
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _recorded_lineage(
    run_id: str, tags: dict[str, str], metrics: dict[str, float]
) -> tuple[str, str, dict[str, float]]:
    """The run's model, its commit and its test metrics; refused when any is missing."""
    model = tags.get(contract.MODEL_TAG)
    commit = tags.get("rnnops.git.commit")
    if not model or not commit or commit == "unknown":
        raise ReproduceError(
            f"run {run_id} has no rnnops lineage (model/commit tags); it cannot be reproduced"
        )
    recorded = {k[len("test_") :]: v for k, v in metrics.items() if k.startswith("test_")}
    if not recorded:
        raise ReproduceError(f"run {run_id} has no test metrics to compare with; was it evaluated?")
    if tags.get("rnnops.git.dirty") == "true":
        log.warning(
            "run %s was made from a dirty working copy; code changes since %s are not reproduced",
            run_id,
            commit[:10],
        )
    return model, commit, recorded


def _restore_processed(tree: Path, dvc: str, env: dict[str, str], commit: str) -> None:
    """The commit's processed data: from the DVC cache, else computed again."""
    restored = subprocess.run(
        [dvc, "checkout", "data/processed"], cwd=tree, env=env, capture_output=True, text=True
    )
    if restored.returncode == 0 and (tree / "data/processed/train.npz").exists():
        return
    log.info("processed data not in the DVC cache for %s; recomputing it", commit[:10])
    # Commits of a pipeline with the params check have ingest depend on its marker.
    if "check_params" in yaml.safe_load((tree / "dvc.yaml").read_text())["stages"]:
        _run([dvc, "repro", "--single-item", "check_params"], tree, env)
    _run([dvc, "repro", "--single-item", "ingest"], tree, env)
    _run([dvc, "repro", "--single-item", "preprocess"], tree, env)


def _restore_pretrained(tree: Path, dvc: str, env: dict[str, str]) -> list[str]:
    """The vectors the model started from: from the cache, else learned again
    (deterministic) from the restored training split. Returns train's option for them."""
    found = subprocess.run(
        [dvc, "checkout", "data/pretrained"], cwd=tree, env=env, capture_output=True
    )
    if found.returncode or not (tree / "data/pretrained/embeddings.npy").exists():
        _run([dvc, "repro", "--single-item", "pretrain"], tree, env)
    return ["--pretrained", "data/pretrained"]


def _retrain(
    tree: Path, out: Path, model: str, pretrained: list[str], env: dict[str, str]
) -> dict[str, Any]:
    """Train and evaluate ``model`` again in ``tree``; its metrics."""
    data = ["--data", "data/processed"]
    _run(["rnnops", "train", model, *data, *pretrained, "--out", str(out / "model")], tree, env)
    _run(
        [
            *("rnnops", "evaluate", model, "--model-dir", str(out / "model"), *data),
            *("--metrics", str(out / "metrics.json"), "--plots", str(out / "plots")),
            *("--report", str(out / "report")),
        ],
        tree,
        env,
    )
    return read_json(out / "metrics.json")
