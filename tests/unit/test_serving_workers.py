"""`rnnops serve --workers N` without processes: the supervisor's relay of a /reload to
every worker, over real pipes, with workers played by threads around real ModelHolders."""

from __future__ import annotations

import os
import threading
from multiprocessing import Pipe

import pandas as pd
import pytest

from rnnops.apps.serving import ModelHolder, create_app
from rnnops.apps.serving_workers import Supervisor, SupervisorLink, Worker
from rnnops.core.config import ServingConfig


class Pyfunc:
    def __init__(self, version: str, fail: bool = False) -> None:
        self.version, self.fail = version, fail

    def predict(self, frame):
        if self.fail:
            raise RuntimeError("broken weights")
        n = len(frame)
        return pd.DataFrame(
            {
                "topics": [[f"v{self.version}"]] * n,
                "scores": [[0.5]] * n,
                "top_topic": [f"v{self.version}"] * n,
                "top_score": [0.5] * n,
            }
        )


class Registry:
    """models:/m@champion points at ``alias_version``; models:/m/N at N."""

    def __init__(self) -> None:
        self.alias_version = "1"
        self.broken: set[str] = set()

    def resolve(self, uri: str) -> dict:
        version = self.alias_version if "@" in uri else uri.rsplit("/", 1)[1]
        return {"name": "m", "version": version, "run_id": "r", "uri": f"models:/m/{version}"}

    def load(self, uri: str):
        version = uri.rsplit("/", 1)[1]
        return Pyfunc(version, fail=version in self.broken)


class FakeProcess:
    """A process whose sentinel is the read end of a pipe: readable once it has 'exited'."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sentinel, self._alive = os.pipe()
        self.exitcode = None

    def exit(self) -> None:
        os.close(self._alive)
        self.exitcode = 1


def worker_pair(registry: Registry, pid: int, broken: set[str] | None = None):
    """A thread-played worker: its holder, its link, and the supervisor's Worker for it."""
    own = Registry()
    own.alias_version, own.broken = registry.alias_version, broken or set()
    holder = ModelHolder("m", "champion", resolve=registry.resolve, load=own.load)
    holder.reload()
    requests, worker_requests = Pipe()
    commands, worker_commands = Pipe()
    link = SupervisorLink(holder, worker_requests, worker_commands)
    link.start()
    return holder, link, Worker(FakeProcess(pid), requests, commands)


def supervisor(workers: list[Worker]) -> Supervisor:
    sup = Supervisor(ServingConfig(workers=len(workers)), "1", None, False, "sqlite:///x.db")
    sup.workers = workers
    return sup


def relay_once(sup: Supervisor, asking: Worker) -> threading.Thread:
    """The supervisor answering one message from ``asking`` (as its loop would)."""
    thread = threading.Thread(target=sup.handle, args=(asking,), daemon=True)
    thread.start()
    return thread


def test_a_reload_in_one_worker_brings_every_other_worker_to_its_version():
    registry = Registry()
    pairs = [worker_pair(registry, pid) for pid in (101, 102, 103)]
    sup = supervisor([w for _, _, w in pairs])
    registry.alias_version = "2"  # promoted; only worker 101 receives the /reload
    holder, link, asking = pairs[0]
    served, changed = holder.reload()
    thread = relay_once(sup, asking)
    answers = link.sync(served.version, changed)
    thread.join(10)
    assert [(a["version"], a["changed"], a["error"]) for a in answers] == [("2", True, None)] * 3
    assert [other.current.version for other, _, _ in pairs] == ["2", "2", "2"]
    assert sup.version == "2"  # what a replacement worker would load


def test_others_load_the_pinned_version_even_if_the_alias_moves_again():
    registry = Registry()
    pairs = [worker_pair(registry, pid) for pid in (101, 102)]
    sup = supervisor([w for _, _, w in pairs])
    registry.alias_version = "2"
    served, changed = pairs[0][0].reload()
    registry.alias_version = "3"  # moved between the first worker's load and the relay
    thread = relay_once(sup, pairs[0][2])
    answers = pairs[0][1].sync(served.version, changed)
    thread.join(10)
    assert [a["version"] for a in answers] == ["2", "2"]
    assert pairs[1][0].current.version == "2"


def test_a_worker_that_cannot_load_keeps_its_version_and_says_why():
    registry = Registry()
    pairs = [worker_pair(registry, 101), worker_pair(registry, 102, broken={"2"})]
    sup = supervisor([w for _, _, w in pairs])
    registry.alias_version = "2"
    served, changed = pairs[0][0].reload()
    thread = relay_once(sup, pairs[0][2])
    answers = pairs[0][1].sync(served.version, changed)
    thread.join(10)
    assert answers[0]["error"] is None
    assert answers[1]["version"] == "1" and "failed a test prediction" in answers[1]["error"]
    assert pairs[1][0].current.version == "1"
    assert sup.version == "1"  # not every worker serves 2: a replacement keeps loading 1


def test_a_worker_that_has_exited_is_reported_not_waited_for():
    registry = Registry()
    pairs = [worker_pair(registry, 101), worker_pair(registry, 102)]
    sup = supervisor([w for _, _, w in pairs])
    gone = pairs[1][2]
    gone.commands.close()  # the process is gone: nobody answers on its pipe
    gone.process.exit()
    gone.commands = Pipe()[0]  # a pipe nobody writes to
    answers = sup.relay_sync(pairs[0][2], "1")
    assert answers == [
        {"pid": 102, "version": None, "changed": False, "error": "worker 102 exited"}
    ]


@pytest.fixture
def two_worker_app():
    """The app of worker 101 of two, its /reload relayed by a live supervisor thread."""
    from fastapi.testclient import TestClient

    registry = Registry()
    pairs = [worker_pair(registry, 101), worker_pair(registry, 102, broken={"3"})]
    sup = supervisor([w for _, _, w in pairs])
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            if pairs[0][2].requests.poll(0.05):
                sup.handle(pairs[0][2])

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    app = create_app(pairs[0][0], 2000, 3, sync_workers=pairs[0][1].sync)
    with TestClient(app) as client:
        yield client, registry, pairs
    stop.set()
    thread.join(5)


def test_reload_answers_with_every_workers_version(two_worker_app):
    client, registry, _ = two_worker_app
    registry.alias_version = "2"
    body = client.post("/reload").json()
    assert body["status"] == "reloaded" and body["model"]["version"] == "2"
    assert [(w["version"], w["error"]) for w in body["workers"]] == [("2", None), ("2", None)]
    again = client.post("/reload").json()
    assert again["status"] == "unchanged"
    assert [w["changed"] for w in again["workers"]] == [False, False]


def test_reload_that_splits_the_workers_is_a_500_naming_them(two_worker_app):
    client, registry, pairs = two_worker_app
    registry.alias_version = "3"  # worker 102 refuses version 3
    resp = client.post("/reload")
    body = resp.json()
    assert resp.status_code == 500 and body["cause"] == "workers_differ"
    assert "1 of 2 workers" in body["error"]
    assert [w["version"] for w in body["workers"]] == ["3", "1"]
    assert body["workers"][1]["error"] and pairs[1][0].current.version == "1"
