"""The batcher: concurrent submissions share batches of one key, overload is refused early, errors
reach the callers of their batch, and shutdown finishes (or refuses) what was accepted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from sftline.serving.batching import Batcher, BatcherClosed, DeadlineExceeded, QueueFull

R = TypeVar("R")
LONG_WINDOW_MS = 10_000.0
"""Long enough that a batch starts only once `max_batch` items wait (or on a drain)."""


class Recorder:
    """A `run_batch` that doubles its items and records each batch; `gate` (when set) blocks a
    batch until released, so tests can fill the queue behind it."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        self.gate.wait(timeout=30)
        return [2 * item for item in items]

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


def run(main: Callable[[], Awaitable[R]]) -> R:
    return asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_concurrent_submissions_share_a_batch() -> None:
    recorder = Recorder()
    seen: list[tuple[int, float]] = []

    async def main() -> list[int]:
        batcher = Batcher(recorder, max_batch=10, window_ms=LONG_WINDOW_MS)
        batcher.on_batch = lambda size, seconds: seen.append((size, seconds))
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.drain()
        return list(results)

    assert run(main) == [2 * i for i in range(10)]
    assert recorder.batches == [list(range(10))]  # one call for ten items, in arrival order
    assert [size for size, _ in seen] == [10] and seen[0][1] >= 0


def test_a_batch_holds_at_most_max_batch_and_the_rest_waits_out_the_window() -> None:
    recorder = Recorder()

    async def main() -> float:
        batcher = Batcher(recorder, max_batch=4, window_ms=200)
        started = time.monotonic()
        await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.drain()
        return time.monotonic() - started

    elapsed = run(main)
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert elapsed >= 0.2  # the last two waited the window for company


def test_only_items_with_the_same_key_share_a_batch() -> None:
    recorder = Recorder()

    async def main() -> list[int]:
        batcher = Batcher(recorder, key=lambda item: item % 2, max_batch=4, window_ms=LONG_WINDOW_MS)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
        await batcher.drain()
        return list(results)

    assert run(main) == [2 * i for i in range(8)]
    assert sorted(recorder.batches) == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_a_full_queue_refuses_at_once_with_a_retry_estimate() -> None:
    recorder = Recorder(gated=True)

    async def main() -> tuple[list[int], float, int]:
        batcher = Batcher(recorder, max_batch=1, window_ms=0, max_queue=2)
        running = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(recorder.started.wait, 30)  # item 0 is being computed
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)  # both are in the queue
        depth = batcher.depth
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(3)
        recorder.gate.set()
        results = await asyncio.gather(running, *queued)
        await batcher.drain()
        return list(results), refused.value.retry_after_s, depth

    results, retry_after, depth = run(main)
    assert results == [0, 2, 4] and depth == 2
    assert retry_after > 0
    assert [3] not in recorder.batches


def test_an_item_past_its_deadline_fails_without_compute() -> None:
    recorder = Recorder(gated=True)

    async def main() -> tuple[float, int]:
        batcher = Batcher(recorder, max_batch=1, window_ms=0)
        running = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(recorder.started.wait, 30)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):  # raised while the worker is still busy with item 0
            await batcher.submit(1, deadline=time.monotonic() + 0.05)
        waited = time.monotonic() - started
        with pytest.raises(DeadlineExceeded):  # already late when it arrives
            await batcher.submit(2, deadline=time.monotonic() - 1)
        depth = batcher.depth
        recorder.gate.set()
        assert await running == 0
        await batcher.drain()
        return waited, depth

    waited, depth = run(main)
    assert 0.05 <= waited < 5 and depth == 0
    assert recorder.batches == [[0]]


def test_an_error_in_run_batch_fails_that_batch_only() -> None:
    def run_batch(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky batch")
        return [2 * item for item in items]

    async def main() -> tuple[list[object], int]:
        batcher = Batcher(run_batch, key=lambda item: item == 13 or item == 14, window_ms=50)
        outcomes = await asyncio.gather(*(batcher.submit(i) for i in (1, 13, 14, 2)), return_exceptions=True)
        after = await batcher.submit(3)  # the worker goes on
        await batcher.drain()
        return list(outcomes), after

    outcomes, after = run(main)
    assert outcomes[0] == 2 and outcomes[3] == 4 and after == 6
    assert [type(o) for o in outcomes[1:3]] == [ValueError, ValueError]
    assert str(outcomes[1]) == "unlucky batch"


def test_a_cancelled_caller_leaves_the_queue() -> None:
    recorder = Recorder(gated=True)

    async def main() -> None:
        batcher = Batcher(recorder, max_batch=1, window_ms=0)
        running = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(recorder.started.wait, 30)
        waiting = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0)
        assert batcher.depth == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert batcher.depth == 0
        recorder.gate.set()
        await running
        await batcher.drain()

    run(main)
    assert recorder.batches == [[0]]


def test_drain_answers_everything_accepted_then_refuses() -> None:
    recorder = Recorder(gated=True)

    async def main() -> list[int]:
        batcher = Batcher(recorder, max_batch=2, window_ms=LONG_WINDOW_MS)
        accepted = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
        await asyncio.to_thread(recorder.started.wait, 30)
        draining = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0.01)
        with pytest.raises(BatcherClosed):
            await batcher.submit(99)
        recorder.gate.set()
        await draining
        return list(await asyncio.gather(*accepted))

    assert run(main) == [0, 2, 4, 6, 8]
    assert recorder.sizes == [2, 2, 1]  # the last one did not wait out the long window


def test_close_fails_the_waiting_and_finishes_the_running_batch() -> None:
    recorder = Recorder(gated=True)

    async def main() -> list[object]:
        batcher = Batcher(recorder, max_batch=1, window_ms=0)
        accepted = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await asyncio.to_thread(recorder.started.wait, 30)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await closing
        return list(await asyncio.gather(*accepted, return_exceptions=True))

    outcomes = run(main)
    assert outcomes[0] == 0
    assert [type(o) for o in outcomes[1:]] == [BatcherClosed, BatcherClosed]
    assert recorder.batches == [[0]]


def test_submit_many_queues_all_or_none() -> None:
    recorder = Recorder(gated=True)

    async def main() -> tuple[list[int], int]:
        batcher = Batcher(recorder, max_batch=1, window_ms=0, max_queue=3)
        running = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(recorder.started.wait, 30)
        queued = asyncio.ensure_future(batcher.submit_many([1, 2]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit_many([3, 4])  # one place left: neither is queued
        depth = batcher.depth
        recorder.gate.set()
        await running
        results = await queued
        await batcher.drain()
        return results, depth

    results, depth = run(main)
    assert results == [2, 4] and depth == 2
    assert recorder.batches == [[0], [1], [2]]
