"""The sink's own thread: jobs run off the training thread, their errors handed back.

``SinkThread`` is a part of ``Sink`` (a mixin), in a file of its own so that
``sinks.py`` keeps where records go. Jobs (encoding images, rendering, writing) wait in
a bounded queue: a full one makes the caller wait. The thread starts with the first
job and ends at ``wait``; what it may not write itself (W&B's ``log`` is not
thread-safe) and the errors of its jobs come back on the training thread through
``check``. It reads the sink's ``active`` and ``is_writer``.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable

import torch
from torch import Tensor

from lightning_cnnviz.core.say import say

__all__ = ["QUEUE_SIZE", "OnError", "SinkThread"]

QUEUE_SIZE = 16  # jobs waiting for the sink's thread; more make the caller wait

OnError = Callable[[Exception], None]


class SinkThread:
    """The thread of one sink (see the module docstring); ``Sink`` documents its timings."""

    active: bool
    is_writer: bool

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], None], OnError | None] | None] | None = None
        self._thread: threading.Thread | None = None
        self._errors: list[tuple[Exception, OnError | None]] = []
        # Writes the sink's thread hands back to the training thread: W&B's `log` is not
        # thread-safe, and Lightning logs to the same run from the training thread.
        self._handoff: collections.deque[Callable[[], None]] = collections.deque()
        self.busy_seconds = 0.0  # time the sink's thread spent on jobs
        self.busy_cpu_seconds = 0.0  # their CPU time (a loaded machine stretches the above)

    def _host_copy(self, tensor: Tensor, dtype: torch.dtype) -> Tensor:
        """``tensor`` on the host in ``dtype``; a queued one shares no memory with the caller's."""
        host = tensor.detach().to("cpu", dtype)
        queued = threading.current_thread() is not self._thread  # a job's own tensors are safe
        return host.clone() if queued and host.data_ptr() == tensor.data_ptr() else host

    def later(self, job: Callable[[], None], on_error: OnError | None = None) -> None:
        """Run ``job`` (rendering, encoding, writing) on the sink's thread, in order.

        At most ``QUEUE_SIZE`` jobs wait; a full queue makes the caller wait. An error
        in ``job`` comes back through ``check`` to ``on_error`` (default: a warning).
        Called from a job itself, the new job runs at once.

        Example::

            >>> import tempfile
            >>> import lightning as L
            >>> from lightning.pytorch.loggers import CSVLogger
            >>> from lightning_cnnviz.core.sinks import Sink
            >>> logger = CSVLogger(tempfile.mkdtemp())
            >>> sink = Sink.of(L.Trainer(logger=logger, enable_progress_bar=False))
            >>> done = []
            >>> sink.later(lambda: done.append(1))
            >>> sink.flush()
            >>> done
            [1]
        """
        if not (self.active and self.is_writer):
            return
        if threading.current_thread() is self._thread:
            job()
            return
        if self._thread is None:
            self._jobs = queue.Queue(maxsize=QUEUE_SIZE)
            self._thread = threading.Thread(target=self._work, name="cnnviz-sink", daemon=True)
            self._thread.start()
        assert self._jobs is not None
        self._jobs.put((job, on_error))

    def _work(self) -> None:
        assert self._jobs is not None
        # A torch op on this thread would start an OpenMP pool of its own that competes
        # with training's (measured: every step 35-45% slower on 2 cores). One thread
        # here, set for this thread only: training keeps its own setting.
        torch.set_num_threads(1)
        while (item := self._jobs.get()) is not None:
            job, on_error = item
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                job()
            except Exception as err:  # handed back to the training thread by ``check``
                self._errors.append((err, on_error))
            self.busy_seconds += time.perf_counter() - start
            self.busy_cpu_seconds += time.thread_time() - start_cpu

    def wait(self) -> None:
        """Wait until every job handed to ``later`` has run (the thread then ends)."""
        if self._thread is not None and self._jobs is not None:
            self._jobs.put(None)
            self._thread.join()
        self._thread = self._jobs = None

    def check(self) -> None:
        """Write what the sink's thread handed back, then pass on the errors of its jobs.

        Images for W&B and MLflow are written here, on the training thread; errors go
        to their job's ``on_error`` (which may raise).
        """
        while self._handoff:
            write = self._handoff.popleft()
            try:
                write()
            except Exception as err:  # a logger's failure costs that record only
                say(f"lightning-cnnviz could not write a record: {err!r}")
        while self._errors:
            err, on_error = self._errors.pop(0)
            if on_error is None:
                say(f"lightning-cnnviz could not write a record: {err!r}")
            else:
                on_error(err)
