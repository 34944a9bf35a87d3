"""`rnnops serve` as a real process on 127.0.0.1, serving the tiny-corpus champion.

The server and champion fixtures live in conftest.py; faults and load are in tests/reliability/.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from conftest import BIN_DIR, SERVE_MAX_DOCUMENTS, free_port, run

pytestmark = pytest.mark.integration

MODEL = "reuters-topics"
MAX_DOCUMENTS = SERVE_MAX_DOCUMENTS


def sample_texts(project: Path) -> list[str]:
    raw = pd.read_parquet(project / "data/raw/reuters.parquet")
    raw = raw[raw["split"] == "test"]
    return [f"{t}\n{x}" for t, x in zip(raw["title"], raw["text"], strict=True)]


def strict_json(resp: httpx.Response):
    def no_constants(name):
        raise AssertionError(f"{name} in a response body")

    assert resp.headers["content-type"].startswith("application/json")
    return json.loads(resp.text, parse_constant=no_constants)


def expected(pyfunc, texts: list[str]) -> list[dict]:
    out = pyfunc.predict(pd.DataFrame({"text": texts}))
    return [
        {
            "topics": list(t),
            "scores": [float(x) for x in s],
            "top_topic": tt,
            "top_score": float(ts),
        }
        for t, s, tt, ts in zip(
            out["topics"], out["scores"], out["top_topic"], out["top_score"], strict=True
        )
    ]


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["topics"] == w["topics"] and g["top_topic"] == w["top_topic"]
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-5)
        assert g["top_score"] == pytest.approx(w["top_score"], abs=1e-5)


def test_health_reports_the_champion_version(server, champion):
    _, _, _, version, _ = champion
    body = strict_json(server.get("/health"))
    assert body["status"] == "ok"
    assert body["model"]["name"] == MODEL and body["model"]["version"] == version
    assert body["model"]["alias"] == "champion"


def test_predictions_equal_the_in_process_pyfunc(server, champion):
    project, _, _, version, pyfunc = champion
    texts = sample_texts(project)[:MAX_DOCUMENTS]
    want = expected(pyfunc, texts)
    body = strict_json(server.post("/predict", json={"text": texts}))
    assert body["model"]["version"] == version
    assert_same(body["predictions"], want)
    one = strict_json(server.post("/predict", json={"text": texts[0]}))
    assert_same(one["predictions"], want[:1])


def test_serve_refuses_to_start_without_a_champion(champion, tmp_path):
    project, env, _, _, _ = champion
    proc = run(
        [str(BIN_DIR / "rnnops"), "serve", "--port", str(free_port()), "--alias", "nobody"],
        project,
        env,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "models:/reuters-topics@nobody" in proc.stderr and "not found" in proc.stderr


def test_invocations_answer_what_predict_answers(server):
    """MLflow's scoring protocol on the real server: the same predictions as /predict."""
    texts = ["wheat and corn exports rose", "oil prices fell as opec raised output", "the"]
    want = strict_json(server.post("/predict", json={"text": texts}))["predictions"]
    for payload in (
        {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}},
        {"dataframe_records": [{"text": t} for t in texts]},
        {"inputs": {"text": texts}},
        {"instances": texts},
    ):
        resp = server.post("/invocations", json=payload)
        assert resp.status_code == 200 and strict_json(resp) == {"predictions": want}
    assert strict_json(server.get("/ping")) == {"status": "ok"}
    bad = server.post("/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[1]]}})
    assert bad.status_code == 400 and 'no "text" column' in strict_json(bad)["error"]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _sockets(pids) -> int:
    """Open sockets of the processes ``pids`` (the listener and accepted connections)."""
    total = 0
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                total += os.readlink(fd).startswith("socket:")
    return total


async def _until_accepted(pids, tasks, baseline: int, timeout: float = 20) -> None:
    """Wait until the servers ``pids`` have accepted every connection of ``tasks`` (or
    answered it): one still in the listen backlog was never accepted, and closing the
    listener on SIGTERM resets it, which is no lost request."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _sockets(pids) - baseline + sum(t.done() for t in tasks) >= len(tasks):
            return
        await asyncio.sleep(0.002)


async def _raw_post(port: int, body: bytes, sent: list) -> tuple[int, dict]:
    """One request on its own connection; ``sent`` gets a mark once it is written."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    writer.write(head + body)
    await writer.drain()
    sent.append(1)
    data = await reader.read()
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def _start_server(args: list[str], env: dict, project: Path, log: Path):
    """`rnnops serve ARGS` on a free port, once /health answers: (process, port, URL)."""
    from conftest import start, stop, wait_for

    port = free_port()
    cmd = [str(BIN_DIR / "rnnops"), "serve", "--port", str(port), *args]
    proc = start(cmd, env, log, cwd=project)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 180, f"rnnops serve {' '.join(args)} health", interval=0.5)
    except BaseException:
        stop(proc)
        raise
    return proc, port, url


def test_load_is_batched_bounded_and_sigterm_drains(champion, tmp_path):
    """2,000 one-document requests at concurrency 64: each answered with its own
    prediction, RSS bounded; then SIGTERM during a burst: every request the server has
    accepted is answered, and the server exits cleanly."""
    import asyncio
    import os
    import signal
    import time

    from conftest import stop
    from rnnops.testing.http_load import load as run_load
    from rnnops.testing.http_load import request_bytes

    project, env, _, _, pyfunc = champion
    texts = sample_texts(project)[:64]
    want = expected(pyfunc, texts)
    log = tmp_path / "server.log"
    proc, port, url = _start_server(["--max-documents", "64"], env, project, log)
    singles = [request_bytes("POST", "/predict", "t", {"text": t}) for t in texts]

    def load(n: int, concurrency: int) -> list:
        # The lean client: httpx's own CPU would otherwise take a core from the server.
        result = run_load(
            url, lambda i: singles[i % len(singles)], n, concurrency, keep_answers=True
        )
        return [(i, a.status, a.json()["predictions"]) for i, a in enumerate(result.answers)]

    async def burst() -> tuple[list, int]:
        sent: list = []
        baseline = _sockets([proc.pid])
        body = json.dumps({"text": texts}).encode()
        tasks = [asyncio.ensure_future(_raw_post(port, body, sent)) for _ in range(64)]
        while len(sent) < len(tasks) or not any(t.done() for t in tasks):
            await asyncio.sleep(0.002)
        await _until_accepted([proc.pid], tasks, baseline)
        os.kill(proc.pid, signal.SIGTERM)  # all accepted, some answered, the rest in flight
        in_flight = sum(not t.done() for t in tasks)
        return await asyncio.gather(*tasks, return_exceptions=True), in_flight

    try:
        load(200, 64)  # warm-up: what the server holds after its first burst
        rss_warm = _rss_kib(proc.pid)
        start_time = time.perf_counter()
        answers = load(2000, 64)
        seconds = time.perf_counter() - start_time
        for i, status, rows in answers:
            assert status == 200
            assert_same(rows, want[i % len(texts) : i % len(texts) + 1])
        grown = (_rss_kib(proc.pid) - rss_warm) / 1024
        assert grown < 150, f"RSS grew {grown:.0f} MiB over 2,000 requests"

        done, in_flight = asyncio.run(burst())
        lost = [d for d in done if isinstance(d, BaseException) or d[0] != 200]
        assert not lost, f"{len(lost)} of {len(done)} accepted requests lost: {lost[:3]}"
        for _, body in done:
            assert_same(body["predictions"], want)
        # uvicorn finished its shutdown; the CLI then exits 143, as for any SIGTERM.
        assert proc.wait(timeout=60) in (0, 128 + signal.SIGTERM), log.read_text()[-2000:]
        assert "Finished server process" in log.read_text()
        print(
            f"2,000 requests in {seconds:.1f} s at concurrency 64, RSS +{grown:.0f} MiB; "
            f"SIGTERM with {in_flight} of 64 requests in flight, none lost"
        )
    finally:
        stop(proc)


def _store_copy(champion, dest: Path) -> tuple[dict, object]:
    """The champion's registry copied to ``dest`` (its artifacts shared, read only), so
    this test can register versions and move the alias: (env, MlflowClient)."""
    import shutil

    import mlflow

    _, env, client, _, _ = champion
    db = Path(client.tracking_uri.removeprefix("sqlite:///"))
    shutil.copy2(db, dest / "mlflow.db")
    uri = f"sqlite:///{dest / 'mlflow.db'}"
    return {**env, "MLFLOW_TRACKING_URI": uri}, mlflow.MlflowClient(uri)


def test_workers_share_one_port_reload_together_replace_the_dead_and_drain(champion, tmp_path):
    """`rnnops serve --workers 2`: both processes answer on one port with the champion's
    predictions; one /reload brings both to the new version; a killed worker is replaced;
    SIGTERM during a burst loses no accepted request and ends every process."""
    import asyncio
    import os
    import signal

    from conftest import stop, wait_for

    project, _, _, version, pyfunc = champion
    env, client = _store_copy(champion, tmp_path)
    texts = sample_texts(project)[:8]
    want = expected(pyfunc, texts)
    log = tmp_path / "server.log"
    proc, port, url = _start_server(["--workers", "2"], env, project, log)

    def health_by_pid(tries: int = 200) -> dict[int, str]:
        """Versions by worker pid, over fresh connections until both workers answered."""
        seen: dict[int, str] = {}
        for _ in range(tries):
            body = httpx.get(f"{url}/health", timeout=10).json()
            seen[body["pid"]] = body["model"]["version"]
            if len(seen) == 2:
                break
        return seen

    try:
        workers = health_by_pid()
        assert len(workers) == 2 and set(workers.values()) == {version}, workers
        assert proc.pid not in workers  # the supervisor answers nothing itself
        for _ in range(4):  # fresh connections reach both processes
            rows = httpx.post(f"{url}/predict", json={"text": texts}, timeout=30).json()
            assert_same(rows["predictions"], want)

        source = client.get_model_version(MODEL, version)
        new = client.create_model_version(MODEL, source.source, run_id=source.run_id).version
        client.set_registered_model_alias(MODEL, "champion", new)
        resp = httpx.post(f"{url}/reload", timeout=120)
        body = strict_json(resp)
        assert resp.status_code == 200 and body["status"] == "reloaded", body
        assert sorted(w["pid"] for w in body["workers"]) == sorted(workers)
        assert {w["version"] for w in body["workers"]} == {str(new)}
        assert set(health_by_pid().values()) == {str(new)}

        dead = next(iter(workers))
        os.kill(dead, signal.SIGKILL)
        wait_for(lambda: len(set(health_by_pid()) - {dead}) == 2, 180, "a replacement worker", 1.0)
        replaced = health_by_pid()
        assert dead not in replaced and set(replaced.values()) == {str(new)}, replaced
        assert "starting another" in log.read_text()

        async def burst() -> list:
            sent: list = []
            baseline = _sockets(replaced)
            payload = json.dumps({"text": texts}).encode()
            tasks = [asyncio.ensure_future(_raw_post(port, payload, sent)) for _ in range(32)]
            while len(sent) < len(tasks):
                await asyncio.sleep(0.002)
            await _until_accepted(list(replaced), tasks, baseline)
            proc.send_signal(signal.SIGTERM)  # the supervisor: it has every worker drain
            return await asyncio.gather(*tasks, return_exceptions=True)

        done = asyncio.run(burst())
        lost = [d for d in done if isinstance(d, BaseException) or d[0] != 200]
        assert not lost, f"{len(lost)} of {len(done)} accepted requests lost: {lost[:3]}"
        assert proc.wait(timeout=90) == 0, log.read_text()[-2000:]
        for pid in replaced:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
            ), f"worker {pid} outlived the supervisor"
    finally:
        stop(proc)


def test_workers_fail_fast_when_the_alias_points_nowhere(champion, tmp_path):
    """The supervisor resolves the alias before it starts a worker: exit 1, the cause named."""
    import subprocess

    project, _, _, _, _ = champion
    env, client = _store_copy(champion, tmp_path)
    client.delete_registered_model_alias(MODEL, "champion")
    cmd = [str(BIN_DIR / "rnnops"), "serve", "--port", str(free_port()), "--workers", "2"]
    done = subprocess.run(cmd, env=env, cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"models:/{MODEL}@champion" in done.stderr and "not found" in done.stderr
    assert "with 2 workers" not in done.stderr  # it stopped before starting any
