"""Work prepared ahead on a background thread: training batches while the device computes.

`Ahead(make, keys, depth)` yields (key, make(key)) for each key, in order. With depth > 0 a
daemon thread computes up to `depth` items ahead into a bounded queue, so a consumer that
spends its time on the device finds its next batch ready; with depth 0 each item is made when
asked for. Both give the same items in the same order: the thread changes when an item is
made, never which. An exception in the thread is raised, as it was raised there, by the
`next()` that would have returned its item.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

_END = object()


class Ahead:
    """An iterator of (key, item); `close()` stops the thread (also safe when there is none).
    `busy_seconds` is the time spent making the `made` items, wherever they were made."""

    def __init__(self, make: Callable, keys: Iterable, depth: int):
        self.make, self.keys, self.depth = make, iter(keys), depth
        self.busy_seconds, self.made = 0.0, 0
        self._stop = threading.Event()
        self._q: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._q = queue.Queue(maxsize=depth)
            # a daemon, so that a consumer that never closes it cannot keep the process alive
            self._thread = threading.Thread(target=self._work, name="prefetch", daemon=True)
            self._thread.start()

    def _timed(self, key):
        t0 = time.perf_counter()
        item = self.make(key)
        self.busy_seconds += time.perf_counter() - t0
        self.made += 1
        return key, item

    def _work(self):
        try:
            for key in self.keys:
                if self._stop.is_set():
                    return
                self._put(self._timed(key))
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(exc)

    def _put(self, x):
        while not self._stop.is_set():
            try:
                self._q.put(x, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        if self._q is None:
            return self._timed(next(self.keys))
        x = self._q.get()
        if x is _END:
            self._q.put(_END)   # every later next() ends too
            raise StopIteration
        if isinstance(x, BaseException):
            self._q.put(x)
            raise x
        return x

    def close(self):
        """Stop the thread and wait for it: an item it is making is finished, then dropped."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                _drain(self._q)
                self._thread.join(timeout=0.05)
            self._thread = None


def _drain(q: queue.Queue):
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
