"""Benchmark: the default pipeline, stage by stage, next to reference baselines.

Runs the default `dvc repro` on the real corpus in a fresh copy of the project
(a temporary git repository), timing each stage, then computes a TF-IDF + linear
SVM baseline and the majority-class baseline on the same processed splits in the
same run. Prints one table and writes bench/results/pipeline.json.

    NLTK_DATA=/path/to/nltk_data python bench/pipeline.py [--set models.lstm.epochs=2 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))

from rnnops.core.overrides import apply_overrides  # noqa: E402
from rnnops.stages.baseline import majority_class, tfidf_svm  # noqa: E402
from rnnops.systems.dvc_driver import stage_order  # noqa: E402

TABLE = ("model", "accuracy", "micro_f1", "macro_f1", "train_seconds")


def make_copy(dest: Path, overrides: dict) -> tuple[Path, dict]:
    dest.mkdir(parents=True)
    for item in ("dvc.yaml", "pyproject.toml", ".gitignore", ".dvcignore"):
        shutil.copy2(ROOT / item, dest / item)
    shutil.copytree(
        ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(
        yaml.safe_dump(apply_overrides(raw, overrides), sort_keys=False)
    )
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    for cmd in (
        ["git", "init", "-q"],
        [str(BIN / "dvc"), "init", "-q"],
        ["git", "add", "-A"],
        [
            "git",
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@rnnops.invalid",
            "commit",
            "-qm",
            "bench",
        ],
    ):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)
    return dest, env


def run_stages(project: Path, env: dict) -> tuple[dict | None, float, dict]:
    """`dvc repro --single-item` per stage in pipeline order: seconds and peak RSS (MiB).

    The peak is the largest process of the stage (DVC or the stage's command).
    """
    stages, peaks, started = {}, {}, time.perf_counter()
    for stage in stage_order(project):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(BIN / "dvc"), "repro", "--single-item", stage],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stages[stage] = round(time.perf_counter() - start, 1)
        peaks[stage] = round(usage.ru_maxrss / 1024, 1)
        print(f"{stage:<20} {stages[stage]:>7.1f} s  peak {peaks[stage]:>7.1f} MiB", flush=True)
        if proc.returncode:
            print(output, file=sys.stderr)
            return None, 0.0, peaks
    return stages, round(time.perf_counter() - started, 1), peaks


def fmt(v) -> str:
    return (
        f"{v:.4f}"
        if isinstance(v, float) and v < 10
        else (f"{v:.1f}" if isinstance(v, float) else str(v))
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override (YAML value), e.g. models.lstm.epochs=2",
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/pipeline.json"))
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}

    with tempfile.TemporaryDirectory(prefix="rnnops-bench-") as tmp:
        project, env = make_copy(Path(tmp) / "project", overrides)
        stages, total, _ = run_stages(project, env)
        if stages is None:
            return 1
        rows = [json.loads(p.read_text()) for p in sorted((project / "metrics").glob("*.json"))]
        rows.append(tfidf_svm(project / "data/raw/reuters.parquet", project / "data/processed"))
        rows.append(majority_class(project / "data/processed"))
        stats = json.loads((project / "data/processed/stats.json").read_text())

    print(f"\nwhole pipeline: {total:.1f} s ({total / 60:.1f} min)\n")
    print(
        f"task: {stats['task']} ({stats['labels']} labels), test documents: {stats['splits']['test']['documents']}"
    )
    widths = [max(len(c), 16) for c in TABLE]
    print("  ".join(c.ljust(w) for c, w in zip(TABLE, widths, strict=True)))
    for row in rows:
        print("  ".join(fmt(row.get(c)).ljust(w) for c, w in zip(TABLE, widths, strict=True)))
    result = {
        "overrides": overrides,
        "stage_seconds": stages,
        "total_seconds": total,
        "task": stats["task"],
        "labels": stats["labels"],
        "models": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
