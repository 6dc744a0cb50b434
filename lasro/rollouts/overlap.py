"""Score collected samples in a worker thread while the next chunk is being sampled.

Rewards are often CPU work (OpenCV, JPEG, OCR, an HTTP round trip) while sampling is accelerator
work; running them one after the other leaves one side idle. ``BackgroundScorer`` keeps one
chunk in flight: ``submit`` returns at once, ``results`` waits and hands back every chunk's result
in submission order (re-raising the first error). With ``enabled=False`` it scores inline, so the
two paths give identical results and a benchmark can compare them.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class BackgroundScorer:
    """Run ``score(*args)`` for each submitted chunk, at most ``max_pending`` chunks ahead."""

    def __init__(self, score: Callable[..., Any], enabled: bool = True, max_pending: int = 1):
        self.score = score
        self.enabled = enabled
        self.max_pending = max(1, int(max_pending))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lasro-reward") if enabled else None
        self._futures: list[Future] = []
        self._done: list[Any] = []

    def submit(self, *args) -> None:
        if self._pool is None:
            self._done.append(self.score(*args))
            return
        # Bound the work in flight (and the memory it holds): wait for the oldest chunk first.
        while len(self._futures) >= self.max_pending:
            self._done.append(self._futures.pop(0).result())
        self._futures.append(self._pool.submit(self.score, *args))

    def results(self) -> list[Any]:
        """Every chunk's result in submission order; the first error raised by ``score`` propagates."""
        try:
            while self._futures:
                self._done.append(self._futures.pop(0).result())
            return self._done
        finally:
            self._done = []

    def close(self) -> None:
        if self._pool is not None:
            for f in self._futures:
                f.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> "BackgroundScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
