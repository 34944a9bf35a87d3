"""Benchmark: the training flow's overhead over plain `dvc repro`, measured in one run.

On the tiny generated corpus (tests/corpus.py) three fresh copies of the project run
the same pipeline: `dvc repro`; the training flow with a temporary Prefect API; the
training flow against a running `prefect server`. Then each runs again with nothing
changed (the no-op case a nightly schedule mostly hits). Prints the wall times and
ratios and writes bench/results/flow_overhead.json.

    python bench/flow_overhead.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

from rnnops.testing.corpus import write_tiny_reuters  # noqa: E402
from rnnops.testing.processes import free_port  # noqa: E402
from rnnops.testing.projects import make_project  # noqa: E402


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return round(seconds, 2)


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen(
        [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("prefect server did not start")


def main() -> int:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rnnops-flow-bench-") as tmp:
        base = Path(tmp)
        nltk_data = write_tiny_reuters(base / "nltk_data")
        server, api_url = start_server(base / "prefect-home")
        try:
            variants = {
                "dvc repro": ([str(BIN / "dvc"), "repro"], {}),
                "flow, temporary API": (
                    [sys.executable, "-m", "flows.training", "--project-dir", "{p}"],
                    {"PREFECT_API_URL": ""},
                ),
                "flow, prefect server": (
                    [sys.executable, "-m", "flows.training", "--project-dir", "{p}"],
                    {"PREFECT_API_URL": api_url},
                ),
            }
            for name, (cmd, extra) in variants.items():
                project, env = make_project(
                    base / name.replace(" ", "_").replace(",", ""), nltk_data
                )
                env.update(
                    extra,
                    MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}",
                    PREFECT_HOME=str(base / "prefect-home"),
                )
                if not env.get("PREFECT_API_URL"):
                    env.pop("PREFECT_API_URL", None)
                cmd = [c.replace("{p}", str(project)) for c in cmd]
                cwd = ROOT if "flows.training" in cmd else project
                results[f"{name}: full pipeline"] = timed(cmd, cwd, env)
                results[f"{name}: nothing changed"] = timed(cmd, cwd, env)
                print(
                    f"{name:<22} full {results[f'{name}: full pipeline']:>7.1f} s   "
                    f"no-op {results[f'{name}: nothing changed']:>6.1f} s",
                    flush=True,
                )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            shutil.rmtree(base / "prefect-home", ignore_errors=True)

    ratios = {}
    for mode in ("full pipeline", "nothing changed"):
        plain = results[f"dvc repro: {mode}"]
        for name in ("flow, temporary API", "flow, prefect server"):
            ratios[f"{name}: {mode}"] = round(results[f"{name}: {mode}"] / plain, 2)
    print("\nratio to dvc repro:")
    for key, value in ratios.items():
        print(f"  {key:<40} {value:>5.2f}x")
    out = ROOT / "bench/results/flow_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": results, "ratio_to_dvc_repro": ratios}, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
