"""Wall time of a 4-point sweep with max_parallel 1 versus 2, measured in one run.

Builds a throwaway project on the tests' tiny generated corpus (only the LSTM), runs
`dvc repro` once so every point starts from the same cached data, then runs two
sweeps of four points each (different seeds per sweep, so DVC's run cache cannot
skip a point) with max_parallel 1 and 2. Writes bench/results/sweep.json.

    python bench/sweep.py            # make bench-sweep
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rnnops.testing.corpus import write_tiny_reuters  # noqa: E402
from rnnops.testing.projects import make_project, run, tiny_params  # noqa: E402


def main() -> int:
    from flows.sweep import sweep_flow

    out = ROOT / "bench" / "results" / "sweep.json"
    with tempfile.TemporaryDirectory(prefix="rnnops-bench-sweep-") as tmp:
        tmp = Path(tmp)
        params = tiny_params()
        params["models"] = {"lstm": params["models"]["lstm"]}
        project, env = make_project(tmp / "project", write_tiny_reuters(tmp / "nltk"), params)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        os.environ.update({k: env[k] for k in ("NLTK_DATA", "PATH", "MLFLOW_TRACKING_URI")})
        run(["dvc", "repro"], project, env)
        run(["git", "add", "-A"], project, env)
        run(["git", "commit", "-qm", "baseline"], project, env)

        results = {}
        seeds = iter(range(1, 100))
        for max_parallel in (1, 2):
            space = {"models.lstm.seed": [next(seeds) for _ in range(4)]}
            start = time.perf_counter()
            summary = sweep_flow(space, max_parallel=max_parallel, project_dir=str(project))
            wall = time.perf_counter() - start
            results[str(max_parallel)] = {
                "wall_seconds": round(wall, 1),
                "points": len(summary["points"]),
                "failed": summary["failed"],
                "point_seconds": [p.get("seconds") for p in summary["points"]],
                "space": space,
            }
            print(f"max_parallel={max_parallel}: 4 points in {wall:.1f}s", flush=True)

    speedup = results["1"]["wall_seconds"] / results["2"]["wall_seconds"]
    report = {
        "what": "wall time of a 4-point sweep (tiny corpus, LSTM 8 units, 1 epoch; each point "
        "trains, evaluates, records its candidate and writes the comparison report), "
        "then one promotion",
        "max_parallel": results,
        "speedup_2_vs_1": round(speedup, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
