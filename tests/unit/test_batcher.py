"""The micro-batcher alone: coalescing, order, isolation of failures, no wait when idle."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnops.core.batcher import BatchSizeError, MicroBatcher


class Model:
    """Records each call; answers item -> (key, item * 10); fails on items in ``bad``."""

    def __init__(self, delay: float = 0.0, bad: frozenset = frozenset()) -> None:
        self.calls: list[tuple[object, list]] = []
        self.delay = delay
        self.bad = bad
        self.lock = threading.Lock()

    def __call__(self, key, items):
        assert self.lock.acquire(blocking=False), "two model calls at once"
        try:
            self.calls.append((key, list(items)))
            if self.delay:
                time.sleep(self.delay)
            if self.bad & set(items):
                raise ValueError(f"bad items {sorted(self.bad & set(items))}")
            return [(key, item * 10) for item in items]
        finally:
            self.lock.release()


requests = st.lists(
    st.tuples(
        st.lists(st.integers(0, 10_000), min_size=1, max_size=6),  # the items
        st.floats(0, 0.003),  # delay before it arrives
        st.sampled_from(["a", "b"]),  # the key (model version)
    ),
    min_size=1,
    max_size=25,
)


async def fire(batcher, reqs):
    async def one(items, delay, key):
        await asyncio.sleep(delay)
        try:
            return await batcher.submit(items, key=key)
        except Exception as exc:
            return exc

    return await asyncio.gather(*(one(*r) for r in reqs))


@settings(max_examples=40, deadline=None)
@given(reqs=requests, max_batch=st.integers(1, 12), model_delay=st.sampled_from([0.0, 0.002]))
def test_each_caller_gets_its_own_rows_in_order(reqs, max_batch, model_delay):
    model = Model(delay=model_delay)
    batcher = MicroBatcher(model, max_batch=max_batch, max_wait_s=0.001)
    answers = asyncio.run(fire(batcher, reqs))
    for (items, _, key), got in zip(reqs, answers, strict=True):
        assert got == [(key, item * 10) for item in items]
    # Every item went through exactly one call; no call is over the bound (a request
    # larger than it runs in slices).
    assert sorted(i for _, items in model.calls for i in items) == sorted(
        i for items, _, _ in reqs for i in items
    )
    for _key, items in model.calls:
        assert len(items) <= max_batch
    assert batcher.stats.requests == len(reqs) and batcher.stats.calls == len(model.calls)


@settings(max_examples=40, deadline=None)
@given(reqs=requests, poisoned=st.lists(st.booleans(), max_size=25), max_batch=st.integers(1, 30))
def test_a_failing_batch_fails_only_its_own_requests(reqs, poisoned, max_batch):
    # A poisoned request carries an item of its own that the model fails on.
    reqs = [
        ([*items, -1 - n] if n < len(poisoned) and poisoned[n] else items, delay, key)
        for n, (items, delay, key) in enumerate(reqs)
    ]
    model = Model(delay=0.001, bad=frozenset(range(-len(reqs) - 1, 0)))
    batcher = MicroBatcher(model, max_batch=max_batch, max_wait_s=0.001)
    answers = asyncio.run(fire(batcher, reqs))
    for (items, _, key), got in zip(reqs, answers, strict=True):
        if items[-1] < 0:
            assert isinstance(got, ValueError) and str([items[-1]]) in str(got)
        else:
            assert got == [(key, item * 10) for item in items]


def test_requests_that_arrive_while_the_model_is_busy_share_one_call():
    release = threading.Event()
    calls = []

    def model(key, items):
        calls.append(list(items))
        release.wait(5)
        return items

    async def scenario():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.sleep(0.05)  # the first call is now running
        rest = [asyncio.ensure_future(batcher.submit([i, -i])) for i in range(1, 11)]
        await asyncio.sleep(0.05)
        assert batcher.queued == 10
        release.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(scenario())
    assert first == [0] and rest == [[i, -i] for i in range(1, 11)]
    assert calls == [[0], [x for i in range(1, 11) for x in (i, -i)]]


def test_a_huge_request_delays_a_small_one_by_one_slice():
    """A request over the bound runs in slices; a request that arrives meanwhile goes
    before the huge one's next slice, and each gets its rows in order."""
    release = threading.Event()
    calls = []

    def model(key, items):
        calls.append(list(items))
        release.wait(5)
        return [i * 10 for i in items]

    async def scenario():
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.0)
        huge = asyncio.ensure_future(batcher.submit(list(range(10))))
        await asyncio.sleep(0.05)  # its first slice is running
        small = asyncio.ensure_future(batcher.submit([100]))
        await asyncio.sleep(0.05)
        release.set()
        return await huge, await small, batcher.stats

    huge, small, stats = asyncio.run(scenario())
    assert huge == [i * 10 for i in range(10)] and small == [1000]
    assert calls == [[0, 1, 2, 3], [100], [4, 5, 6, 7], [8, 9]]
    assert (stats.requests, stats.items, stats.largest) == (2, 11, 4)


def test_an_idle_batcher_does_not_wait():
    """A long maximum wait is only spent under load: lone requests start at once."""

    async def scenario():
        batcher = MicroBatcher(lambda key, items: items, max_batch=64, max_wait_s=2.0)
        start = time.perf_counter()
        for i in range(20):
            assert await batcher.submit([i]) == [i]
        return time.perf_counter() - start

    assert asyncio.run(scenario()) < 1.0


def test_the_wait_under_load_is_bounded():
    """After a coalesced call the next one waits at most max_wait for a fuller batch."""

    async def scenario():
        batcher = MicroBatcher(lambda key, items: items, max_batch=64, max_wait_s=0.2)
        assert await asyncio.gather(batcher.submit([1]), batcher.submit([2])) == [[1], [2]]
        start = time.perf_counter()
        assert await batcher.submit([3]) == [3]  # arrives while the batcher lingers
        return time.perf_counter() - start

    assert asyncio.run(scenario()) < 0.2 + 0.5


def test_a_wrong_number_of_rows_fails_the_requests_not_the_batcher():
    async def scenario():
        batcher = MicroBatcher(lambda key, items: items[:-1], max_batch=8, max_wait_s=0.0)
        results = await asyncio.gather(
            batcher.submit([1, 2]), batcher.submit([3]), return_exceptions=True
        )
        return results

    results = asyncio.run(scenario())
    assert all(isinstance(r, BatchSizeError) for r in results)


def test_a_caller_that_goes_away_does_not_disturb_the_others():
    release = threading.Event()

    def model(key, items):
        release.wait(5)
        return items

    async def scenario():
        batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.0)
        busy = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.sleep(0.02)
        gone = asyncio.ensure_future(batcher.submit([1]))
        kept = asyncio.ensure_future(batcher.submit([2]))
        await asyncio.sleep(0.02)
        gone.cancel()
        release.set()
        return await busy, await kept, batcher.stats.items

    assert asyncio.run(scenario()) == ([0], [2], 2)


@pytest.mark.parametrize(("max_batch", "max_wait"), [(0, 0.0), (1, -1.0)])
def test_bounds_are_checked(max_batch, max_wait):
    with pytest.raises(ValueError):
        MicroBatcher(lambda key, items: items, max_batch=max_batch, max_wait_s=max_wait)
