"""Adaptive micro-batching: concurrent requests share one model call.

A model call on 30 documents costs little more than on one (the network runs the rows
together), so requests that arrive while the model is busy wait for the call in progress
to end and then go in together. Nothing waits on an idle batcher: the first request
starts a call at once. Only while requests keep coming together (the call that just ended
held more than one) does the next call wait up to ``max_wait_s`` for more to arrive,
which keeps batches large under steady load.

- A call holds whole requests, in arrival order, up to ``max_batch`` items. A request
  larger than that runs in slices of ``max_batch``, and after each slice its rest goes
  to the back of the queue: requests that arrived meanwhile go first, so a huge request
  delays a small one by one slice, never by its whole length. Requests are batched only
  with requests under the same ``key`` (the model version that is to answer them).
- Each caller gets its own results, in the order of its items.
- A failing batch of several requests is retried request by request, so each request
  gets its own answer or its own error and one bad request never fails its neighbours.
  A model call that returns a wrong number of rows counts as failing.
- A caller that goes away (its request is cancelled) is dropped before its batch is
  formed, or its share of the results is discarded.

The model runs on one thread of the batcher's own (calls are serialised: Keras models
are not thread-safe), so the event loop stays free to read and parse requests.
Pure asyncio: nothing here knows about HTTP or models.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchFunction = Callable[[Any, list[T]], Sequence[R]]


class BatchSizeError(RuntimeError):
    """The batch function returned a different number of results than it got items."""


@dataclass
class _Pending(Generic[T]):
    key: Any
    items: list[T]
    future: asyncio.Future = field(repr=False)
    results: list = field(default_factory=list, repr=False)  # of the slices already run

    @property
    def left(self) -> int:
        return len(self.items) - len(self.results)


@dataclass
class _Slice:
    """The part of a request that one call scores: its next ``size`` items."""

    pending: _Pending
    size: int

    @property
    def items(self) -> list:
        start = len(self.pending.results)
        return self.pending.items[start : start + self.size]


@dataclass
class BatchStats:
    """What the batcher has done: calls made, requests and items answered, retries."""

    calls: int = 0
    requests: int = 0
    items: int = 0
    largest: int = 0
    retried_batches: int = 0


class MicroBatcher(Generic[T, R]):
    """Coalesce concurrent :meth:`submit` calls into calls of ``fn(key, items)``.

    ``fn`` runs on a worker thread and must return one result per item, in order.
    """

    def __init__(
        self,
        fn: BatchFunction,
        max_batch: int,
        max_wait_s: float,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="model")
        self._clock = clock
        self._pending: deque[_Pending[T]] = deque()
        self._worker: asyncio.Task | None = None
        self._arrived: asyncio.Event | None = None
        self.stats = BatchStats()

    @property
    def queued(self) -> int:
        """Requests waiting for a model call (not counting the call in progress)."""
        return len(self._pending)

    async def submit(self, items: Sequence[T], key: Hashable | Any = None) -> list[R]:
        """The results of ``items``, scored with whatever else is waiting under ``key``."""
        items = list(items)
        if not items:
            return []
        loop = asyncio.get_running_loop()
        pending = _Pending(key, items, loop.create_future())
        self._pending.append(pending)
        if self._arrived is not None:
            self._arrived.set()
        if self._worker is None or self._worker.done():
            # The worker lives only while there is work: nothing to start or stop with
            # the app, and a batcher used from a new event loop starts a new worker.
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        coalesced = False
        while True:
            if coalesced and self.max_wait_s > 0:
                await self._linger()
            batch = self._take()
            if not batch:
                return
            await self._run(batch)
            coalesced = len(batch) > 1

    async def _linger(self) -> None:
        """Under load, wait up to ``max_wait_s`` for a full batch (stop as soon as there is)."""
        deadline = self._clock() + self.max_wait_s
        while self._queued_items() < self.max_batch:
            left = deadline - self._clock()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:  # the builtin TimeoutError only from 3.11
                return

    def _queued_items(self) -> int:
        head = self._pending[0].key if self._pending else None
        total = 0
        for pending in self._pending:
            if pending.key is not head:
                break
            total += pending.left
        return total

    def _take(self) -> list[_Slice]:
        while self._pending and self._pending[0].future.done():  # cancelled callers
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        batch = [_Slice(first, min(first.left, self.max_batch))]
        size = batch[0].size
        while self._pending:
            nxt = self._pending[0]
            if nxt.future.done():
                self._pending.popleft()
                continue
            if nxt.key is not first.key or size + nxt.left > self.max_batch:
                break
            batch.append(_Slice(self._pending.popleft(), nxt.left))
            size += nxt.left
        return batch

    async def _call(self, key: Any, items: list[T]) -> list[R]:
        loop = asyncio.get_running_loop()
        results = list(await loop.run_in_executor(self._executor, self._fn, key, items))
        self.stats.calls += 1
        if len(results) != len(items):
            raise BatchSizeError(
                f"the model returned {len(results)} results for {len(items)} items"
            )
        return results

    async def _run(self, batch: list[_Slice]) -> None:
        items = [item for part in batch for item in part.items]
        self.stats.largest = max(self.stats.largest, len(items))
        try:
            results = await self._call(batch[0].pending.key, items)
        except Exception as exc:
            if len(batch) == 1:
                _answer(batch[0].pending, exc=exc)
                return
            # Which request broke the batch is unknown: each one alone finds out.
            self.stats.retried_batches += 1
            for part in batch:
                if part.pending.future.done():
                    continue
                try:
                    own = await self._call(part.pending.key, part.items)
                except Exception as own_exc:
                    _answer(part.pending, exc=own_exc)
                else:
                    self._done(part, own)
            return
        start = 0
        for part in batch:
            self._done(part, results[start : start + part.size])
            start += part.size

    def _done(self, part: _Slice, results: Sequence) -> None:
        """Record a slice's results; answer its request, or queue the rest of it last."""
        pending = part.pending
        if pending.future.done():  # the caller went away meanwhile
            return
        pending.results.extend(results)
        if pending.left:
            self._pending.append(pending)
            return
        self.stats.requests += 1
        self.stats.items += len(pending.items)
        _answer(pending, results=pending.results)


def _answer(pending: _Pending, results: list | None = None, exc: BaseException | None = None):
    if pending.future.done():  # the caller went away meanwhile
        return
    if exc is not None:
        pending.future.set_exception(exc)
    else:
        pending.future.set_result(results)
