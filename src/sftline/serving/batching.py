"""Request batching: many concurrent callers, one worker thread, a model call per batch.

A model answers a batch of 16 in about the time it answers one (decoding is bound by reading the
weights, not by arithmetic), so a server that runs requests one by one wastes most of the chip.
`Batcher` lets every caller `await submit(item)` from the event loop while one worker thread
collects what is waiting into batches and runs `run_batch` on each. torch releases the GIL while
it computes, so the event loop keeps accepting requests during a batch.

A batch holds only items with the same `key` (requests that can share one `generate` call: the
same sampling settings, the same constraint). The worker waits up to `window_ms` after the oldest
waiting item arrived for others to join it, or less once `max_batch` of its key are waiting: an
idle server adds at most the window to a request's latency; a busy one adds nothing (the queue
has filled while the previous batch ran).

Overload is refused early rather than queued forever: a full queue raises `QueueFull` at once
(with an estimate of when to retry), and an item whose deadline passes while it waits raises
`DeadlineExceeded` without any compute spent on it. Results cross back to the caller's event loop
with `call_soon_threadsafe`; asyncio futures are not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sftline.errors import SftlineError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

SMOOTHING = 0.2
"""Weight of the newest batch in the running mean of batch seconds (for `QueueFull.retry_after_s`)."""


class QueueFull(SftlineError):
    """The batcher's queue is full: the server is overloaded (HTTP 429 with Retry-After)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"the request queue is full; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s
        """About how long the queue needs to make room: the waiting batches times the mean batch time."""


class DeadlineExceeded(SftlineError):
    """The request's deadline passed before its batch started; nothing was computed for it."""


class BatcherClosed(SftlineError):
    """The batcher is shutting down and takes no new items (or dropped them in `close`)."""


def _same_key(_: Any) -> Hashable:
    return None


@dataclass(eq=False)
class _Pending(Generic[T, R]):
    """One submitted item and where its result goes."""

    item: T
    key: Hashable
    deadline: float | None
    """In `time.monotonic()` seconds."""
    future: asyncio.Future[R]
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)


class Batcher(Generic[T, R]):
    """An asyncio front over one worker thread that runs `run_batch(items) -> results` (one result
    per item, in order) on batches of items with the same `key`."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        key: Callable[[T], Hashable] = _same_key,
        max_batch: int = 16,
        window_ms: float = 5.0,
        max_queue: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "sftline-batcher",
    ) -> None:
        if max_batch < 1 or max_queue < 1 or window_ms < 0:
            raise ValueError(
                f"max_batch and max_queue must be at least 1 and window_ms at least 0 "
                f"(got {max_batch}, {max_queue}, {window_ms})"
            )
        self.run_batch = run_batch
        self.key = key
        self.max_batch = max_batch
        self.window_s = window_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        """Called from the worker thread after each batch with its size and its seconds of compute
        (for metrics: batch sizes, busy time)."""
        self._lock = threading.Condition()
        self._waiting: deque[_Pending[T, R]] = deque()
        self._running = 0
        self._accepting = True
        self._mean_batch_s: float | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Items waiting for a batch (not counting the batch being computed)."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Items in the batch being computed now."""
        return self._running

    async def submit(self, item: T, *, deadline: float | None = None) -> R:
        """The result of `item`, once its batch has run. `deadline` is a `time.monotonic()` time
        by which its batch must have started."""
        [result] = await self.submit_many([item], deadline=deadline)
        return result

    async def submit_many(self, items: Sequence[T], *, deadline: float | None = None) -> list[R]:
        """The results of `items`, queued together (all or none: QueueFull leaves none behind) and
        batched like separate submissions. The first failure among them is raised."""
        if len(items) > self.max_queue:
            raise ValueError(f"{len(items)} items cannot fit a queue of {self.max_queue}")
        loop = asyncio.get_running_loop()
        pending = [
            _Pending[T, R](item, self.key(item), deadline, loop.create_future(), loop) for item in items
        ]
        self._enqueue(pending, deadline)
        try:
            if deadline is not None:
                await self._wait_until(pending, deadline)
            return list(await asyncio.gather(*(p.future for p in pending)))
        except BaseException:  # cancelled, or one failed: the others need no compute any more
            self._withdraw(pending)
            _abandon(p.future for p in pending)
            raise

    def _enqueue(self, pending: list[_Pending[T, R]], deadline: float | None) -> None:
        with self._lock:
            if not self._accepting:
                raise BatcherClosed("the model is shutting down and takes no new requests")
            if len(self._waiting) + len(pending) > self.max_queue:
                raise QueueFull(self._retry_after())
            if deadline is not None and deadline <= time.monotonic():
                raise DeadlineExceeded("the request's deadline had passed when it arrived")
            self._waiting.extend(pending)
            self._lock.notify_all()

    async def _wait_until(self, pending: list[_Pending[T, R]], deadline: float) -> None:
        """Wait for the results until `deadline`; then fail with DeadlineExceeded whatever has not
        started (a batch that started runs to its end: its result still comes)."""
        futures = [p.future for p in pending]
        _, waiting = await asyncio.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        if waiting and self._withdraw(pending):
            raise DeadlineExceeded("the request's deadline passed while it waited for a batch")

    def _withdraw(self, pending: list[_Pending[T, R]]) -> bool:
        """Take out of the queue those of `pending` still waiting; True if there were any."""
        with self._lock:
            taken = [p for p in pending if p in self._waiting]
            for p in taken:
                self._waiting.remove(p)
            if taken:
                self._lock.notify_all()  # the head may have changed
        return bool(taken)

    def _retry_after(self) -> float:
        batches_ahead = -(-len(self._waiting) // self.max_batch) + 1  # ceil, plus the running one
        return round(batches_ahead * (self._mean_batch_s or 1.0), 3)

    # --- the worker thread ---------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._run(batch)
        finally:  # only on shutdown, or a bug in this class: never leave a caller waiting
            with self._lock:
                left, self._waiting = list(self._waiting), deque()
            for p in left:
                _deliver(p, error=BatcherClosed("the model shut down before the request ran"))

    def _next_batch(self) -> list[_Pending[T, R]] | None:
        """The next batch: items with the key of the oldest waiting item, once the window after
        its arrival has passed or `max_batch` of them wait. None once closed and empty."""
        with self._lock:
            while True:
                if not self._waiting:
                    if not self._accepting:
                        return None
                    self._lock.wait()
                    continue
                head = self._waiting[0]
                same = [p for p in self._waiting if p.key == head.key]
                left = head.arrived + self.window_s - time.monotonic()
                if left > 0 and len(same) < self.max_batch and self._accepting:
                    self._lock.wait(left)  # woken early by a new item, a withdrawal or a close
                    continue
                batch, late = self._split_late(same[: self.max_batch])
                for p in (*batch, *late):
                    self._waiting.remove(p)
                self._running = len(batch)
                break
        for p in late:
            _deliver(p, error=DeadlineExceeded("the request's deadline passed while it waited for a batch"))
        return batch

    @staticmethod
    def _split_late(
        candidates: list[_Pending[T, R]],
    ) -> tuple[list[_Pending[T, R]], list[_Pending[T, R]]]:
        now = time.monotonic()
        late = [p for p in candidates if p.deadline is not None and p.deadline <= now]
        return [p for p in candidates if p not in late], late

    def _run(self, batch: list[_Pending[T, R]]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            results = list(self.run_batch([p.item for p in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
        except Exception as error:  # the batch's callers get it; the worker goes on
            for p in batch:
                _deliver(p, error=error)
        else:
            for p, result in zip(batch, results, strict=True):
                _deliver(p, result=result)
        seconds = time.perf_counter() - started
        with self._lock:
            self._running = 0
            previous = self._mean_batch_s
            self._mean_batch_s = seconds if previous is None else previous + SMOOTHING * (seconds - previous)
            self._lock.notify_all()
        if self.on_batch is not None:
            try:
                self.on_batch(len(batch), seconds)
            except Exception:  # a metrics callback must not stop the model
                log.exception("the batcher's on_batch callback failed")

    # --- shutdown ------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Take no new items, answer every item already accepted, and stop the worker."""
        with self._lock:
            self._accepting = False
            self._lock.notify_all()
        await asyncio.to_thread(self._thread.join)

    async def close(self) -> None:
        """Take no new items, fail those still waiting with BatcherClosed, let the running batch
        finish, and stop the worker."""
        with self._lock:
            self._accepting = False
            dropped, self._waiting = list(self._waiting), deque()
            self._lock.notify_all()
        for p in dropped:
            _deliver(p, error=BatcherClosed("the model shut down before the request ran"))
        await asyncio.to_thread(self._thread.join)


def _deliver(pending: _Pending[Any, Any], *, result: Any = None, error: BaseException | None = None) -> None:
    """Settle the item's future on its own event loop (from any thread)."""
    with contextlib.suppress(RuntimeError):  # the caller's loop has closed: nobody is waiting
        pending.loop.call_soon_threadsafe(_settle, pending.future, result, error)


def _abandon(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Nobody will read these futures: cancel the pending ones (a later result is dropped) and mark
    the failed ones' errors as seen (asyncio logs an error never retrieved)."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (cancelled) meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
