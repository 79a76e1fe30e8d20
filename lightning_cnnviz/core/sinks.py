"""Where images, scalars and text go. Knows about loggers, nothing about CNNs.

One ``Sink`` per trainer (shared by all monitors, so each message is said once):

* images and text go to the run's TensorBoard logger, or, where the run has
  none, to PNG / Markdown files under the run directory (one message says where);
* scalars go to every configured logger through Lightning's logger API
  (TensorBoard, CSV, W&B, MLflow, ...), TensorBoard's from the sink's thread;
* ``fast_dev_run`` replaces loggers with a ``DummyLogger``: the sink is then
  inactive and monitors step aside, with one warning;
* only global rank zero writes;
* images and histograms are encoded on the sink's own thread, off the training
  thread, as are jobs handed to ``later`` (a bounded queue: a full one makes the
  caller wait). ``flush`` (at the end of fit) waits for them, and their errors come
  back on the training thread through ``check``.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.utilities.rank_zero import WarningCache, rank_zero_warn
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor

__all__ = ["Sink", "encode_png"]

_ATTR = "_cnnviz_sink"
QUEUE_SIZE = 16  # jobs waiting for the sink's thread; more make the caller wait

OnError = Callable[[Exception], None]


def _write_scalars(logger: TensorBoardLogger, metrics: dict[str, float], step: int) -> None:
    """``logger.log_metrics`` as one event of many values (not an event per scalar)."""
    prefix = f"{logger._prefix}{logger.LOGGER_JOIN_CHAR}" if logger._prefix else ""
    values = [Summary.Value(tag=prefix + k, simple_value=float(v)) for k, v in metrics.items()]
    _add_summary(logger.experiment, Summary(value=values), step)


def _add_summary(writer: Any, summary: Summary, step: int) -> None:
    """Queue a built summary the way ``SummaryWriter.add_*`` do (on its file writer)."""
    writer._get_file_writer().add_summary(summary, step)


def encode_png(image: Tensor, palette: Tensor | None = None, compress_level: int = 1) -> bytes:
    """PNG bytes of a uint8 ``(3, H, W)`` image, or of ``(H, W)`` indices into ``palette``.

    zlib level 1 with no float round trip: a 512 x 512 RGB dead strip in 4 ms (1 ms as
    palette indices), where ``SummaryWriter.add_image`` (level 6, after a float32 copy)
    takes 16 ms; files of flat images come out a few KB larger.

    Example::

        >>> png = encode_png(torch.zeros(3, 4, 5, dtype=torch.uint8))
        >>> png[1:4], len(png) < 100
        (b'PNG', True)
    """
    from PIL import Image

    if palette is None:
        pixels = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    else:
        pixels = Image.fromarray(image.numpy())
        pixels.putpalette(palette.to(torch.uint8).flatten().tolist())  # "L" becomes "P"
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


class Sink:
    """Writes one run's records. Get it with ``Sink.of(trainer)``.

    Attributes:
        active: False when the monitors must step aside (``fast_dev_run``).
        busy_seconds: time the sink's thread spent on jobs (off the training thread).
        writer: the TensorBoard ``SummaryWriter`` or ``None`` (PNG fallback).
        image_dir: where PNG files go when there is no TensorBoard logger.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.is_writer = trainer.is_global_zero
        self.loggers = [lg for lg in trainer.loggers if not isinstance(lg, DummyLogger)]
        self.active = not any(isinstance(lg, DummyLogger) for lg in trainer.loggers)
        tensorboard = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        self.writer = tensorboard.experiment if (tensorboard and self.is_writer) else None
        base = self.loggers[0].log_dir if self.loggers and self.loggers[0].log_dir else None
        self.image_dir = Path(base or trainer.default_root_dir) / "cnnviz"
        self._said = WarningCache()
        self._layers: dict[int, list[str]] = {}  # `cnnviz/layers` entries by step
        self._jobs: queue.Queue[tuple[Callable[[], None], OnError | None] | None] | None = None
        self._thread: threading.Thread | None = None
        self._errors: list[tuple[Exception, OnError | None]] = []
        self.busy_seconds = 0.0  # time the sink's thread spent on jobs
        if not self.active:
            rank_zero_warn(
                "lightning-cnnviz monitors step aside: this run uses a DummyLogger "
                "(`fast_dev_run`), so nothing would be kept. Run without `fast_dev_run` "
                "to see the visualisations."
            )

    @classmethod
    def of(cls, trainer: Trainer) -> Sink:
        """The trainer's sink, made on first use (per set of loggers)."""
        key = tuple(id(lg) for lg in trainer.loggers)
        sink = getattr(trainer, _ATTR, None)
        if sink is None or sink._key != key:
            sink = cls(trainer)
            sink._key = key
            setattr(trainer, _ATTR, sink)
        return sink

    def _fallback_note(self) -> None:
        self._said.info(
            f"lightning-cnnviz: no TensorBoard logger in this run; images and text go to "
            f"{self.image_dir}"
        )

    def layers(self, description: str, step: int) -> None:
        """Add a monitor's resolved selection to ``cnnviz/layers`` at ``step``.

        TensorBoard shows one text per tag and step, so the entry written last holds
        every monitor's selection made at that step.
        """
        at_step = self._layers.setdefault(step, [])
        at_step.append(description)
        self.text("cnnviz/layers", "\n\n".join(at_step), step)

    def image(self, tag: str, image: Tensor, step: int, palette: Tensor | None = None) -> None:
        """Write a uint8 ``(3, H, W)`` image, or ``(H, W)`` uint8 indices into ``palette``.

        A ``palette`` (``(256, 3)`` uint8, e.g. a colormap) stores one byte per pixel:
        a colormapped image encodes several times faster and needs no colouring first.
        """
        if not (self.active and self.is_writer):
            return
        host = self._host_copy(image, torch.uint8).contiguous()
        colours = None if palette is None else self._host_copy(palette, torch.uint8)
        if self.writer is None:
            self._fallback_note()
        self.later(lambda: self._write_image(tag, host, step, colours))

    def _write_image(self, tag: str, image: Tensor, step: int, palette: Tensor | None) -> None:
        png = encode_png(image, palette)
        if self.writer is not None:  # what ``add_image`` writes, from our faster encoding
            height, width = image.shape[-2:]
            encoded = Summary.Image(
                height=height, width=width, colorspace=3, encoded_image_string=png
            )
            _add_summary(self.writer, Summary(value=[Summary.Value(tag=tag, image=encoded)]), step)
            return
        path = self.image_dir / tag / f"step_{step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        """Write scalars to every logger (values already on the host)."""
        if not (self.active and self.is_writer) or not metrics:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):  # its writer queues events under a lock
                self.later(
                    lambda logger=logger, copy=dict(metrics): _write_scalars(logger, copy, step)
                )
            else:  # other loggers may not be thread-safe: here, on the training thread
                logger.log_metrics(dict(metrics), step)

    def text(self, tag: str, text: str, step: int) -> None:
        """Write a Markdown text entry."""
        if not (self.active and self.is_writer):
            return
        if self.writer is not None:
            self.writer.add_text(tag, text, step)
            return
        self._fallback_note()
        path = self.image_dir / f"{tag.replace('/', '_')}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as file:
            file.write(f"## step {step}\n\n{text}\n\n")

    def histogram(self, tag: str, values: Tensor, step: int) -> None:
        """Write a histogram (TensorBoard only; skipped elsewhere)."""
        if self.active and self.is_writer and self.writer is not None:
            host = self._host_copy(values, torch.float32)
            writer = self.writer
            self.later(lambda: writer.add_histogram(tag, host, step))

    def embedding(self, tag: str, features: Tensor, step: int, **kwargs: Any) -> None:
        """Write an embedding for TensorBoard's projector (TensorBoard only)."""
        if self.active and self.is_writer and self.writer is not None:
            self.writer.add_embedding(
                features.detach().float().cpu(), tag=tag, global_step=step, **kwargs
            )

    # ------------------------------------------------------------ the sink's thread
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

            >>> import lightning as L
            >>> sink = Sink.of(L.Trainer(logger=False, enable_progress_bar=False))
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
            start = time.perf_counter()
            try:
                job()
            except Exception as err:  # handed back to the training thread by ``check``
                self._errors.append((err, on_error))
            self.busy_seconds += time.perf_counter() - start

    def wait(self) -> None:
        """Wait until every job handed to ``later`` has run (the thread then ends)."""
        if self._thread is not None and self._jobs is not None:
            self._jobs.put(None)
            self._thread.join()
        self._thread = self._jobs = None

    def check(self) -> None:
        """Hand the errors of finished jobs to their ``on_error`` (which may raise)."""
        while self._errors:
            err, on_error = self._errors.pop(0)
            if on_error is None:
                rank_zero_warn(f"lightning-cnnviz could not write a record: {err!r}")
            else:
                on_error(err)

    def flush(self) -> None:
        """Wait for the sink's thread, flush pending records to disk, then ``check``."""
        self.wait()
        if self.writer is not None:
            self.writer.flush()
        self.check()
