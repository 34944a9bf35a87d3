"""Benchmark: the champion served over HTTP next to the same pyfunc called in-process.

Without --tracking-uri it first trains a champion on a tiny generated corpus (the tests'
generator; only the LSTM, `dvc repro` in a temporary project); `--corpus reuters` trains
on the real corpus instead (NLTK_DATA), with `--set KEY=VALUE` params overrides. With
--tracking-uri it benchmarks models:/<--model-name>@<--alias> of that store as it is.

In one run it starts `rnnops serve` on 127.0.0.1 and measures:

- one-document latency (p50, p99): sequential POST /predict with one story each,
  over a keep-alive connection, against `pyfunc.predict` on a one-row frame in-process;
- batch throughput (documents per second): sequential requests of --batch stories.

Two in-process rows: the pyfunc exactly as `mlflow.pyfunc.load_model` returns it, and
the serving path (the same pyfunc, loaded by rnnops.serving.ModelHolder). Requests carry
real Reuters test stories when NLTK_DATA holds the corpus, else the generated ones.
Prints one table and writes bench/results/serving.json.

    NLTK_DATA=/path/to/nltk_data python bench/serving.py [--requests 500] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from rnnops.config import apply_overrides  # noqa: E402

MODEL = "reuters-topics"
TINY = {
    "preprocess.max_len": 40,
    "preprocess.min_freq": 1,
    "preprocess.val_fraction": 0.25,
    "models.lstm.units": 8,
    "models.lstm.embedding_dim": 8,
    "pretrain.dim": 8,
    "models.lstm.epochs": 1,
    "models.lstm.batch_size": 16,
}
TARGETS = {"p50_ms": 30.0, "docs_per_s": 2000.0}


def build_champion(dest: Path, corpus: str, overrides: dict) -> tuple[Path, str, dict]:
    """A temporary git + DVC project whose `dvc repro` registers a champion."""
    dest.mkdir(parents=True)
    for item in ("dvc.yaml", "pyproject.toml", ".gitignore", ".dvcignore"):
        shutil.copy2(ROOT / item, dest / item)
    shutil.copytree(
        ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    if corpus == "tiny":
        from corpus import write_tiny_reuters

        env["NLTK_DATA"] = str(write_tiny_reuters(dest.parent / "nltk_data"))
        overrides = {**TINY, **overrides}
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = apply_overrides(raw, overrides)
    params["models"] = {"lstm": params["models"]["lstm"]}
    params["ensembles"] = {}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    uri = f"sqlite:///{dest.parent / 'mlflow.db'}"
    env["MLFLOW_TRACKING_URI"] = uri
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@rnnops.invalid"]
    for cmd in (
        ["git", "init", "-q"],
        [str(BIN / "dvc"), "init", "-q"],
        ["git", "add", "-A"],
        [*git, "commit", "-qm", "bench"],
        [str(BIN / "dvc"), "repro"],
    ):
        proc = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return dest, uri, params["models"]["lstm"] | {"max_len": params["preprocess"]["max_len"]}


def request_texts(project: Path | None, n: int) -> tuple[list[str], str]:
    try:
        from nltk.corpus import reuters

        ids = [f for f in reuters.fileids() if f.startswith("test/")]
        texts = [t for t in (reuters.raw(f) for f in ids) if t.strip()]
        if texts:
            return (texts * (n // len(texts) + 1))[:n], "Reuters test stories"
    except LookupError:
        pass
    import pandas as pd

    if project is None:
        raise SystemExit("no documents: set NLTK_DATA to a folder holding the Reuters corpus")
    raw = pd.read_parquet(project / "data/raw/reuters.parquet")
    texts = [f"{t}\n{x}" for t, x in zip(raw["title"], raw["text"], strict=True)]
    return (texts * (n // len(texts) + 1))[:n], "generated tiny-corpus stories"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def latencies(call, texts: list[str], n: int, warmup: int = 20) -> dict:
    for i in range(warmup):
        call(texts[i % len(texts)])
    times = []
    for i in range(n):
        start = time.perf_counter()
        call(texts[i % len(texts)])
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "n": n,
    }


def throughput(call, texts: list[str], batch: int, rounds: int) -> dict:
    batches = [texts[(i * batch) % len(texts) :][:batch] for i in range(rounds)]
    batches = [b if len(b) == batch else (b + texts)[:batch] for b in batches]
    call(batches[0])  # warm-up
    start = time.perf_counter()
    for chunk in batches:
        call(chunk)
    seconds = time.perf_counter() - start
    return {"docs_per_s": round(batch * rounds / seconds, 1), "batch": batch, "rounds": rounds}


def start_server(project: Path | None, env: dict, port: int, max_documents: int, log: Path):
    cmd = [str(BIN / "rnnops")]
    if project is not None:
        cmd += ["--params", str(project / "params.yaml")]
    cmd += ["serve", "--port", str(port), "--max-documents", str(max_documents)]
    cmd += ["--max-body-bytes", str(64 * 1024 * 1024)]
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd,
            cwd=project or ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracking-uri", help="benchmark the champion of this store as it is")
    parser.add_argument("--model-name", default=MODEL)
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--corpus", choices=("tiny", "reuters"), default="tiny")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--requests", type=int, default=500, help="one-document requests")
    parser.add_argument("--batch", type=int, default=256, help="documents per batch request")
    parser.add_argument("--rounds", type=int, default=20, help="batch requests")
    parser.add_argument("--out", default=str(ROOT / "bench/results/serving.json"))
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}

    import httpx

    from rnnops import tracking
    from rnnops.serving import ModelHolder

    with tempfile.TemporaryDirectory(prefix="rnnops-bench-serving-") as tmp:
        tmp = Path(tmp)
        project, model_params = None, None
        if args.tracking_uri:
            uri = args.tracking_uri
        else:
            start = time.perf_counter()
            print(f"training a champion on the {args.corpus} corpus ...", flush=True)
            project, uri, model_params = build_champion(tmp / "project", args.corpus, overrides)
            print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
        os.environ["MLFLOW_TRACKING_URI"] = uri
        tracking.use_tracking_uri(uri)
        ref = tracking.resolve_model_version(f"models:/{args.model_name}@{args.alias}")
        texts, source = request_texts(project, max(args.batch * 4, 1000))

        port = free_port()
        proc = start_server(project, env, port, args.batch, tmp / "server.log")
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 180
            while True:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit("server did not start:\n" + (tmp / "server.log").read_text())
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)
            results = {}
            with httpx.Client(base_url=url, timeout=120) as client:

                def http_predict(payload):
                    resp = client.post("/predict", json={"text": payload})
                    resp.raise_for_status()
                    return resp.json()

                served_version = client.get("/health").json()["model"]["version"]
                results["HTTP: rnnops serve"] = {
                    **latencies(http_predict, texts, args.requests),
                    **throughput(http_predict, texts, args.batch, args.rounds),
                }
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

        import pandas as pd

        pyfunc = tracking.load_text_model(ref["uri"])

        def pyfunc_predict(payload):
            batch = [payload] if isinstance(payload, str) else payload
            return pyfunc.predict(pd.DataFrame({"text": batch}))

        holder = ModelHolder(args.model_name, args.alias)
        served, _ = holder.reload()

        def holder_predict(payload):
            return served.predict([payload] if isinstance(payload, str) else payload)

        # In-process with mlflow's Model.predict path is slow per call: fewer one-doc calls.
        results["in-process: mlflow pyfunc"] = {
            **latencies(pyfunc_predict, texts, min(args.requests, 200)),
            **throughput(pyfunc_predict, texts, args.batch, args.rounds),
        }
        results["in-process: serving path"] = {
            **latencies(holder_predict, texts, args.requests),
            **throughput(holder_predict, texts, args.batch, args.rounds),
        }

    print(
        f"\nmodel {ref['uri']} (served version {served_version}); {source}, "
        f"mean {np.mean([len(t) for t in texts]):.0f} characters; "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})\n"
    )
    header = ("path", "1-doc p50 ms", "1-doc p99 ms", f"docs/s (batches of {args.batch})")
    rows = [
        (name, f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['docs_per_s']:.0f}")
        for name, r in results.items()
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    http = results["HTTP: rnnops serve"]
    print(
        f"\ntargets: p50 <= {TARGETS['p50_ms']:.0f} ms: "
        f"{'met' if http['p50_ms'] <= TARGETS['p50_ms'] else 'MISSED'}; "
        f">= {TARGETS['docs_per_s']:.0f} docs/s: "
        f"{'met' if http['docs_per_s'] >= TARGETS['docs_per_s'] else 'MISSED'}"
    )
    out = {
        "model": ref,
        "model_params": model_params,
        "corpus": None if args.tracking_uri else args.corpus,
        "documents": source,
        "mean_characters": round(float(np.mean([len(t) for t in texts])), 1),
        "cpus": os.cpu_count(),
        "results": results,
        "targets": TARGETS,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
