"""``rnnops serve --workers N``: N server processes on one port that serve one version.

Why several: one process leaves a core idle while it tokenizes documents and writes JSON
between network calls; a second process fills those gaps (``bench/serving.py``). Each
process holds its own copy of the model, so a ``/reload`` must reach all of them: the
worker that receives it loads the version the alias points at now, then the supervisor
has every other worker load that same pinned version (``models:/NAME/N``, so an alias
that moves meanwhile cannot split them) before the answer goes out.

The supervisor (the parent process) resolves the alias and binds the socket, so a
missing model or a taken port fails at once; it starts the workers (spawned, not
forked: TensorFlow's threads do not survive a fork), waits until each has loaded the
model, and then only relays reloads, replaces a worker that dies, and on SIGTERM or
SIGINT has each worker answer the requests it has read before everything exits.

Messages are tuples over two pipes per worker: on ``requests`` the worker asks
(``ready``, ``failed``, ``sync``) and the supervisor answers a ``sync``; on ``commands``
the supervisor asks (``load``) and the worker answers.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from rnnops.apps.serving_models import ModelHolder, ModelLoadError
from rnnops.core.config import ServingConfig

log = logging.getLogger(__name__)

# A worker loads a version in about 15 s (the default champion, XLA compilation
# included); past this the supervisor reports it as not answering.
LOAD_TIMEOUT_S = 600.0


def _answer(pid: int, version: str | None, changed: bool, error: str | None) -> dict[str, Any]:
    return {"pid": pid, "version": version, "changed": changed, "error": error}


# --------------------------------------------------------------------------- worker side


class SupervisorLink:
    """A worker's end of the pipes: answers the supervisor's ``load`` commands on a
    thread of its own, and asks it to bring the other workers to a version."""

    def __init__(self, holder: ModelHolder, requests: Connection, commands: Connection) -> None:
        self._holder = holder
        self._requests = requests
        self._commands = commands
        self._ask = threading.Lock()  # one question on the requests pipe at a time

    def start(self) -> None:
        threading.Thread(target=self._answer_commands, name="supervisor-link", daemon=True).start()

    def _answer_commands(self) -> None:
        while True:
            try:
                _, version = self._commands.recv()
            except (EOFError, OSError):  # the supervisor has gone: nothing left to answer
                return
            try:
                served, changed = self._holder.reload(version=version)
                answer = _answer(os.getpid(), served.version, changed, None)
            except ModelLoadError as exc:
                current = self._holder.current
                answer = _answer(os.getpid(), current and current.version, False, str(exc))
            self._commands.send(answer)

    def sync(self, version: str | None, changed: bool) -> list[dict[str, Any]]:
        """Have every other worker serve ``version``; each worker's answer, this one first."""
        with self._ask:
            self._requests.send(("sync", version))
            others = self._requests.recv()
        return [_answer(os.getpid(), version, changed, None), *others]


def _exit_with_the_supervisor() -> None:
    """Linux: SIGTERM this worker (it drains, then exits) if the supervisor dies, even by
    SIGKILL, so no orphan keeps answering on the port."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    supervisor = multiprocessing.parent_process()
    if supervisor is not None and os.getppid() != supervisor.pid:  # it died before that
        raise SystemExit(0)


def _worker_main(
    cfg: ServingConfig,
    access_log: bool,
    sock: Any,
    requests: Connection,
    commands: Connection,
    version: str,
    tracking_uri: str,
) -> None:
    """One worker: load ``version``, say so, then answer HTTP on the shared socket."""
    from rnnops.apps.cli_runtime import setup_logging
    from rnnops.apps.serving import serve_holder, serving_holder
    from rnnops.systems import tracking

    _exit_with_the_supervisor()
    # A spawned process starts without the parent's logging and MLflow settings.
    setup_logging(False)
    tracking.use_tracking_uri(tracking_uri)
    holder = serving_holder(cfg)
    try:
        holder.reload(version=version)
    except ModelLoadError as exc:
        requests.send(("failed", str(exc)))
        raise SystemExit(1) from None
    link = SupervisorLink(holder, requests, commands)
    link.start()
    requests.send(("ready", version))
    serve_holder(cfg, holder, access_log, sockets=[sock], sync_workers=link.sync)


# --------------------------------------------------------------------------- supervisor


def _gone(worker: Worker, why: str) -> dict[str, Any]:
    return _answer(worker.pid, None, False, f"worker {worker.pid} {why}")


@dataclass
class Worker:
    """A worker process and the supervisor's ends of its two pipes."""

    process: Any
    requests: Connection
    commands: Connection

    @property
    def pid(self) -> int:
        return self.process.pid


class WorkerStartError(RuntimeError):
    """A worker could not load the model at start; the server does not start."""


class Supervisor:
    """Starts ``cfg.workers`` processes that serve ``version`` on ``sock``, relays their
    reloads, and stops them on SIGTERM or SIGINT."""

    def __init__(
        self, cfg: ServingConfig, version: str, sock: Any, access_log: bool, tracking_uri: str
    ) -> None:
        self.cfg = cfg
        self.tracking_uri = tracking_uri
        self.version = version
        self.sock = sock
        self.access_log = access_log
        self.workers: list[Worker] = []
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")

    # -- processes

    def spawn(self, version: str) -> Worker:
        requests, worker_requests = self._context.Pipe()
        commands, worker_commands = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(
                self.cfg,
                self.access_log,
                self.sock,
                worker_requests,
                worker_commands,
                version,
                self.tracking_uri,
            ),
            name="rnnops-serve-worker",
        )
        process.start()
        worker_requests.close()
        worker_commands.close()
        return Worker(process, requests, commands)

    def wait_ready(self, worker: Worker) -> None:
        """Block until ``worker`` has loaded its model; raise WorkerStartError if it cannot."""
        while not self._stop.is_set():
            ready = wait([worker.requests, worker.process.sentinel], timeout=0.5)
            if worker.requests in ready:
                try:
                    kind, detail = worker.requests.recv()
                except EOFError:
                    kind, detail = "failed", "it exited while loading the model"
                if kind == "ready":
                    return
                raise WorkerStartError(detail)
            if worker.process.sentinel in ready:
                raise WorkerStartError(
                    f"worker {worker.pid} exited (status {worker.process.exitcode}) while "
                    "loading the model; see the log above"
                )
        raise WorkerStartError("stopped while the workers were starting")

    def start_all(self) -> None:
        """Start every worker (they load the model side by side) and wait for all of them."""
        for _ in range(self.cfg.workers):
            self.workers.append(self.spawn(self.version))
        try:
            for worker in self.workers:
                self.wait_ready(worker)
        except WorkerStartError:
            self.stop_all()
            raise

    def stop_all(self) -> None:
        """SIGTERM to every worker (each answers what it has read), then wait for them."""
        for worker in self.workers:
            if worker.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.shutdown_timeout_s + 10
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.warning("worker %d did not stop in time; killing it", worker.pid)
                worker.process.kill()
                worker.process.join(5)

    # -- reloads

    def relay_sync(self, asking: Worker, version: str | None) -> list[dict[str, Any]]:
        """Bring every worker but ``asking`` to ``version``; their answers, in order."""
        others = [w for w in self.workers if w is not asking]
        asked = []
        for worker in others:  # all first: they load side by side
            try:
                worker.commands.send(("load", version))
                asked.append(worker)
            except OSError:  # a broken pipe: the process has exited
                pass
        answers = [self._await_answer(w) if w in asked else _gone(w, "exited") for w in others]
        if version is not None and all(a["error"] is None for a in answers):
            self.version = version  # what a replacement worker loads
        return answers

    @staticmethod
    def _await_answer(worker: Worker) -> dict[str, Any]:
        ready = wait([worker.commands, worker.process.sentinel], timeout=LOAD_TIMEOUT_S)
        if worker.commands in ready:
            with contextlib.suppress(EOFError, OSError):
                return worker.commands.recv()
        return _gone(worker, "exited" if ready else "did not answer in time")

    def handle(self, worker: Worker) -> None:
        """One message from ``worker``."""
        try:
            kind, detail = worker.requests.recv()
        except EOFError:
            return  # it is exiting; its sentinel says so next
        if kind == "sync":
            worker.requests.send(self.relay_sync(worker, detail))

    def replace(self, worker: Worker) -> None:
        """A worker died: start another that serves the agreed version in its place."""
        log.error(
            "worker %d exited (status %s); starting another", worker.pid, worker.process.exitcode
        )
        index = self.workers.index(worker)
        fresh = self.spawn(self.version)
        self.workers[index] = fresh
        try:
            self.wait_ready(fresh)
        except WorkerStartError as exc:
            log.error("the replacement worker failed to start: %s", exc)
            self.workers.pop(index)

    def supervise(self) -> None:
        """Relay reloads and replace dead workers until asked to stop or none is left."""
        while not self._stop.is_set() and self.workers:
            by_conn = {w.requests: w for w in self.workers}
            by_sentinel = {w.process.sentinel: w for w in self.workers}
            for ready in wait([*by_conn, *by_sentinel], timeout=0.5):
                if ready in by_conn:
                    self.handle(by_conn[ready])
                elif not self._stop.is_set():
                    self.replace(by_sentinel[ready])
                    break  # the lists changed
        if not self.workers:
            raise RuntimeError("every worker has exited; see the log above")

    def request_stop(self, signum: int, frame: Any) -> None:
        self._stop.set()

    def run(self) -> None:
        """Start, supervise, stop; SIGTERM and SIGINT end it gracefully."""
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.start_all()
            log.info(
                "%d workers serve version %s on http://%s:%d",
                len(self.workers),
                self.version,
                self.cfg.host,
                self.cfg.port,
            )
            self.supervise()
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
