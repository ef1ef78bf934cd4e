"""BLAS threads for the training loop, chosen by measurement, epoch by epoch.

The loop's matrix products are small (a 100-image batch against 10 or 20
weight rows). On an idle 2-core machine two OpenBLAS threads make an epoch
about 1.5× faster than one; but when another process holds a core, the two
threads wait for each other at every product and an epoch was measured 40×
slower. So the loop tries each thread count once, then keeps whichever ran
its latest epoch faster: when load appears, the slow count loses and the
other takes over. OpenBLAS splits a product's output between threads, never
its sums, so the weights are bit-identical whatever is chosen (tested).
"""

from __future__ import annotations


class AdaptiveBlasThreads:
    """Context manager; call ``epoch_done(seconds)`` after every epoch."""

    def __init__(self) -> None:
        self._controller = None
        self._candidates: list[int] = []
        self._latest: dict[int, float] = {}
        self._current = 0

    def __enter__(self) -> "AdaptiveBlasThreads":
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # without it the library's own default stays in force
            return self
        controller = ThreadpoolController().select(user_api="blas")
        most = max((pool.num_threads for pool in controller.lib_controllers), default=1)
        if most > 1:  # already limited to one (e.g. in a joblib worker): nothing to choose
            self._controller, self._original = controller, controller.info()
            self._candidates = [most, 1]
            self._use(most)
        return self

    def __exit__(self, *exc) -> None:
        if self._controller is not None:
            for pool in self._original:
                self._controller.limit(limits=pool["num_threads"], user_api="blas")

    @property
    def threads(self) -> int | None:
        return self._current or None

    def epoch_done(self, seconds: float) -> None:
        if self._controller is None:
            return
        self._latest[self._current] = seconds
        untried = [n for n in self._candidates if n not in self._latest]
        self._use(untried[0] if untried else min(self._candidates, key=self._latest.__getitem__))

    def _use(self, threads: int) -> None:
        if threads != self._current:
            self._controller.limit(limits=threads, user_api="blas")
            self._current = threads
