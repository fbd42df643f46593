"""Dynamic micro-batching: concurrent requests share one forward pass.

Requests wait in a queue; the first one of a batch waits at most ``max_wait_ms`` for others, up to
``max_batch`` rows, then the whole batch runs on one model thread (so torch keeps its own intra-op
threads and the event loop keeps answering). ``max_batch=1`` turns batching off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    """Groups ``submit`` calls into calls of ``run(items) -> results`` (one result per item)."""

    def __init__(
        self,
        run: Callable[[list[Item]], list[Result]],
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.on_batch = on_batch or (lambda n: None)
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyfuse-model")
        self._queue: asyncio.Queue[tuple[list[Item], asyncio.Future[list[Result]]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._next: tuple[list[Item], asyncio.Future[list[Result]]] | None = None  # starts the next batch

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.model_thread.shutdown(wait=False, cancel_futures=True)

    async def submit(self, items: list[Item]) -> list[Result]:
        """Results for ``items`` (kept together in one batch), once their batch has run."""
        assert self._queue is not None, "MicroBatcher.start() was not awaited"
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        await self._queue.put((items, future))
        return await future

    async def exclusive(self, fn: Callable[[], Any]) -> Any:
        """Runs ``fn`` on the model thread, between batches (e.g. an explanation's passes)."""
        return await asyncio.get_running_loop().run_in_executor(self.model_thread, fn)

    async def _loop(self) -> None:
        assert self._queue is not None
        while True:
            first, self._next = self._next, None
            batch = [first if first is not None else await self._queue.get()]
            await self._gather(batch)
            batch = [(items, fut) for items, fut in batch if not fut.done()]  # timed-out clients left
            if batch:
                await self._run(batch)

    async def _gather(self, batch: list[tuple[list[Item], asyncio.Future[list[Result]]]]) -> None:
        assert self._queue is not None
        rows, deadline = len(batch[0][0]), time.monotonic() + self.max_wait
        while rows < self.max_batch:
            if self._queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    request = await asyncio.wait_for(self._queue.get(), timeout=left)
                except TimeoutError:
                    return
            else:
                request = self._queue.get_nowait()
            if rows + len(request[0]) > self.max_batch:  # a request never splits: it starts the next batch
                self._next = request
                return
            batch.append(request)
            rows += len(request[0])

    async def _run(self, batch: list[tuple[list[Item], asyncio.Future[list[Result]]]]) -> None:
        items = [item for request, _ in batch for item in request]
        self.on_batch(len(items))
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.model_thread, self.run, items)
        except Exception as exc:  # a server bug: every waiting request gets it (logged, a 500)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        start = 0
        for request, fut in batch:
            if not fut.done():
                fut.set_result(results[start : start + len(request)])
            start += len(request)
