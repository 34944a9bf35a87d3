"""Load, bounded and on loopback only (issue items 24-26); the figures are printed (run
with -s to see them), and `make test-reliability` also writes them to
bench/results/reliability_load.json."""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import threading
import time
import tracemalloc

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT_ROOT, SERVE_MAX_BODY_BYTES

pytestmark = pytest.mark.integration

# `make test-reliability` records the figures in the tracked results file; `make test` only
# prints them, so a test run leaves the working copy as it was.
RESULTS = PROJECT_ROOT / "bench" / "results" / "reliability_load.json"
RECORD = os.environ.get("RNNOPS_RECORD_LOAD_RESULTS") == "1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def record(key: str, values: dict) -> None:
    print(f"\n{key}: {json.dumps(values)}")
    if not RECORD:
        return
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = values
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- 24

FLOWS, EPOCHS, PROBES = 32, 2, 5


def _toy(n=32, max_len=6, vocab=12, n_labels=3, seed=0):
    from rnnops.stages.preprocess import Dataset

    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_labels, size=n).astype(np.int32)
    x = rng.integers(2, vocab, size=(n, max_len)).astype(np.int32)
    x[:, 0] = y + 2
    return Dataset(x=x, y=y, doc_ids=np.array([f"d{i}" for i in range(n)]), lengths=np.full(n, 6))


def _load_flow():
    from prefect import flow, task

    from rnnops.core.config import ModelConfig
    from rnnops.stages.train import train_model
    from rnnops.systems import tracking

    latencies: list[float] = []
    lock = threading.Lock()

    def timed_log(metrics, step):
        start = time.perf_counter()
        tracking.log_metrics(metrics, step=step)
        with lock:
            latencies.append(time.perf_counter() - start)

    @task(persist_result=False)
    def train_and_log(uri: str, index: int) -> str:
        import keras

        class TimedLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                timed_log({k: float(v) for k, v in (logs or {}).items()}, epoch + 1)

        tracking.configure(uri, "load")
        cfg = ModelConfig(
            kind="gru", units=4, embedding_dim=4, epochs=EPOCHS, batch_size=16,
            early_stopping_patience=0, seed=index,
        )  # fmt: skip
        data = _toy(seed=index)
        with tracking.stage_run(run_name=f"load-{index}", tags={"rnnops.load": "24"}) as run:
            train_model(cfg, data, data, "singlelabel", 12, 3, callbacks=[TimedLogger()])
            for step in range(1, PROBES + 1):
                timed_log({"probe": float(step)}, step)
            return run.info.run_id

    @flow(name="load-probe", persist_result=False)
    def load_flow(uri: str, index: int) -> str:
        return train_and_log(uri, index)

    return load_flow, latencies


def test_24_32_concurrent_flows_log_to_one_mlflow_server(prefect_harness, mlflow_server):
    """Item 24: 32 concurrent flows (tiny model, 2 epochs) log to one `mlflow server` ->
    0 errors, every run FINISHED, every metric point present; p95 logging latency reported."""
    import mlflow

    load_flow, latencies = _load_flow()
    states: dict[int, object] = {}

    def launch(i):
        states[i] = load_flow(mlflow_server, i, return_state=True)

    start = time.perf_counter()
    threads = [threading.Thread(target=launch, args=(i,)) for i in range(FLOWS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - start
    failed = {i: s.message for i, s in states.items() if not s.is_completed()}
    assert len(states) == FLOWS and not failed, failed

    client = mlflow.MlflowClient(mlflow_server)
    run_ids = [s.result() for s in states.values()]
    for run_id in run_ids:
        got = client.get_run(run_id)
        assert got.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2]
        assert [m.value for m in client.get_metric_history(run_id, "probe")] == [
            float(s) for s in range(1, PROBES + 1)
        ]
    assert len(latencies) == FLOWS * (EPOCHS + PROBES)
    record(
        "item_24_concurrent_flows",
        {
            "flows": FLOWS,
            "metric_calls": len(latencies),
            "errors": 0,
            "logging_latency_p50_ms": round(1000 * statistics.median(latencies), 1),
            "logging_latency_p95_ms": round(1000 * percentile(latencies, 95), 1),
            "wall_seconds": round(wall, 1),
        },
    )


# --------------------------------------------------------------------------- 25

REQUESTS, CONCURRENCY = 400, 32


def test_25_burst_of_400_requests_at_concurrency_32(server, champion):
    """Item 25: 400 scoring requests, 32 at a time -> all 200 and correct; p50/p95 reported."""
    project, _, _, version, pyfunc = champion
    raw = pd.read_parquet(project / "data/raw/reuters.parquet")
    raw = raw[raw["split"] == "test"]
    texts = [f"{t}\n{x}" for t, x in zip(raw["title"], raw["text"], strict=True)][:20]
    want = pyfunc.predict(pd.DataFrame({"text": texts}))

    async def burst():
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        gate = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(
            base_url=str(server.base_url), timeout=60, limits=limits
        ) as client:

            async def one(i):
                async with gate:
                    start = time.perf_counter()
                    resp = await client.post("/predict", json={"text": texts[i % len(texts)]})
                    return resp, time.perf_counter() - start

            return await asyncio.gather(*(one(i) for i in range(REQUESTS)))

    start = time.perf_counter()
    results = asyncio.run(asyncio.wait_for(burst(), timeout=300))
    wall = time.perf_counter() - start
    assert [r.status_code for r, _ in results] == [200] * REQUESTS
    for i, (resp, _) in enumerate(results):
        body = resp.json()
        assert body["model"]["version"] == version
        (got,) = body["predictions"]
        assert got["topics"] == list(want["topics"][i % len(texts)])
        assert got["top_score"] == pytest.approx(float(want["top_score"][i % len(texts)]), abs=1e-5)
    latencies = [t for _, t in results]
    record(
        "item_25_burst",
        {
            "requests": REQUESTS,
            "concurrency": CONCURRENCY,
            "status_200": REQUESTS,
            "latency_p50_ms": round(1000 * statistics.median(latencies), 1),
            "latency_p95_ms": round(1000 * percentile(latencies, 95), 1),
            "throughput_rps": round(REQUESTS / wall, 1),
        },
    )


# --------------------------------------------------------------------------- 26


def test_26_document_far_over_max_len_is_truncated_with_bounded_memory(server, champion):
    """Item 26: a document far over max_len -> encoded to max_len tokens, memory bounded."""
    _, _, _, _, pyfunc = champion
    predictor = pyfunc.unwrap_python_model().predictor
    max_len = predictor.settings.max_len
    lead = "oil prices rose as opec cut crude output "
    huge = lead * 100_000  # ~4 MB, 800,000 tokens
    short = " ".join(huge.split()[: max_len + 5])

    tracemalloc.start()
    try:
        x = predictor.encode([huge])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert x.shape == (1, max_len)
    np.testing.assert_array_equal(x, predictor.encode([short]))
    assert peak < 1_000_000, f"encoding took {peak / 1e6:.1f} MB"
    got = predictor.predict([huge])
    assert list(got["topics"][0]) == list(predictor.predict([short])["topics"][0])

    body = lead * ((SERVE_MAX_BODY_BYTES - 100) // len(lead))
    resp = server.post("/predict", json={"text": body})
    assert resp.status_code == 200
    record(
        "item_26_long_document",
        {
            "document_chars": len(huge),
            "max_len": max_len,
            "encode_peak_bytes": peak,
            "served_document_bytes": len(body),
        },
    )
