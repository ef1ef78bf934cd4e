"""Threads that speed training up without changing a single bit of its result.

OpenBLAS may round one product differently on one thread and on two, and the
same rows differently inside a taller matrix: seen on an AMD EPYC (kernel
"Haswell"), while a Xeon ("SkylakeX") happened to agree. So nothing here relies
on what a BLAS build happens to do:

* ``one_blas_thread()``: every product runs on a single BLAS thread, so its bits
  depend only on its operands (their shapes and values) and the BLAS build;
* the training loop cuts each product into two halves at fixed places (rows of
  the batch, columns of the weights), the same cut whoever computes them, and
  ``TwoHalves`` runs the two halves on one thread or on two.

Two threads are faster on an idle machine, but they wait for each other at
every product, and when another process holds a core that wait made an epoch
many times slower (measured 40× with two BLAS threads). So ``TwoHalves`` tries
each count once, then keeps whichever ran its latest epoch faster: when load
appears, the slow count loses and the other takes over. Only the speed
depends on that choice.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread for the duration; nestable and safe across threads.

    The limit is process-wide, so it is counted: it is lifted only when the
    last user (e.g. of several trainings in one Dask worker) leaves.
    """
    global _blas_users, _blas_limiter
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def on_one_blas_thread(function: Callable) -> Callable:
    """Decorator: ``function`` runs under ``one_blas_thread()``, so its numbers never depend on threads."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with one_blas_thread():
            return function(*args, **kwargs)

    return wrapper


class _Helper(threading.Thread):
    """A second thread that runs one task at a time for ``TwoHalves``."""

    def __init__(self) -> None:
        super().__init__(name="cifarcli-half", daemon=True)
        # The caller's context, so its settings hold here too (numpy's errstate lives in a contextvar).
        self._context = contextvars.copy_context()
        self._go, self._done = threading.Lock(), threading.Lock()  # the cheapest handshake, made at every batch
        self._go.acquire()
        self._done.acquire()
        self._task: Callable[[], None] | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        self._context.run(self._serve)

    def _serve(self) -> None:
        while True:
            self._go.acquire()
            if self._task is None:
                return
            try:
                self._task()
            except BaseException as exc:  # handed to the caller of finish()
                self._error = exc
            self._done.release()

    def begin(self, task: Callable[[], None]) -> None:
        self._task = task
        self._go.release()

    def finish(self) -> None:
        self._done.acquire()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def stop(self) -> None:
        """End the thread once its task in hand, if any, is done: nothing writes to the caller's arrays after."""
        self._task = None
        # After a Ctrl-C inside finish() the helper may not have taken its last task yet: then the go it
        # has not used ends it (it reads no task), and releasing the lock again would raise RuntimeError.
        if self._go.locked():
            self._go.release()
        self.join()


class TwoHalves:
    """Context manager: ``run(first, second)`` runs both halves of a cut product.

    ``threads`` None chooses 2 or 1 by measurement (call ``epoch_done(seconds)``
    after every epoch); 1 or 2 fixes the count. ``threads`` is the count in use.
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads not in (None, 1, 2):
            raise ValueError(f"threads must be None, 1 or 2, got {threads!r}")
        self._candidates = [2, 1] if threads is None else [threads]
        self._latest: dict[int, float] = {}
        self.threads = self._candidates[0]
        self._helper: _Helper | None = None

    def __enter__(self) -> TwoHalves:
        if 2 in self._candidates:
            self._helper = _Helper()
            self._helper.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._helper is not None:
            self._helper.stop()
            self._helper = None

    def run(self, first: Callable[[], None], second: Callable[[], None]) -> None:
        if self.threads == 1:
            first()
            second()
            return
        self._helper.begin(second)
        try:
            first()
        finally:
            self._helper.finish()

    def epoch_done(self, seconds: float) -> None:
        self._latest[self.threads] = seconds
        untried = [n for n in self._candidates if n not in self._latest]
        self.threads = untried[0] if untried else min(self._candidates, key=self._latest.__getitem__)
