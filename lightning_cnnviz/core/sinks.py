"""Where images, scalars and text go. Knows about loggers, nothing about CNNs.

One ``Sink`` per trainer (shared by all monitors, so each message is said once),
for ``lightning.pytorch`` and ``pytorch_lightning`` trainers alike:

* images and text go to each TensorBoard, W&B and MLflow logger of the run through
  its own API (``core/destinations.py``); a run with none of them (CSV only, or
  ``logger=False``) gets a folder of its own, ``<log dir>/cnnviz`` (``cnnviz_1``, ...
  if taken), said once;
* scalars go to every configured logger through Lightning's logger API,
  TensorBoard's from the sink's thread, MLflow's with names it accepts
  (``destinations.mlflow_name``); ``logger=False`` keeps none, said once;
* histograms, projector embeddings and chart layouts are TensorBoard-only (said
  once elsewhere), written to each TensorBoard logger of the run;
* ``split_scalars`` writes a train or val twin into a TensorBoard run of its own
  (``<log dir>/train``, ``<log dir>/val``, under each TensorBoard logger):
  TensorBoard colours lines by run, so only twins in two runs get two colours in
  one chart;
* ``fast_dev_run`` replaces loggers with a ``DummyLogger``: the sink is then
  inactive and monitors step aside, with one warning;
* only global rank zero writes;
* images and histograms are encoded on the sink's own thread, off the training
  thread, as are jobs handed to ``later`` (a bounded queue: a full one makes the
  caller wait; ``core/sink_thread.py``). ``flush`` (at the end of fit) waits for
  them, and their errors come back on the training thread through ``check``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities.rank_zero import WarningCache
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor

from lightning_cnnviz.core.destinations import (
    Destination,
    Folder,
    MLflow,
    TensorBoard,
    Wandb,
    add_summary,
    latest_embedding_first,
    mlflow_name,
    run_folder,
    tag_prefix,
)
from lightning_cnnviz.core.namespaces import is_logger
from lightning_cnnviz.core.png import encode_png
from lightning_cnnviz.core.say import say
from lightning_cnnviz.core.sink_thread import QUEUE_SIZE, SinkThread

__all__ = ["QUEUE_SIZE", "Sink", "encode_png", "wandb_disabled"]

_ATTR = "_cnnviz_sink"


def _write_scalars(logger: Any, metrics: dict[str, float], step: int) -> None:
    """``logger.log_metrics`` as one event of many values (not an event per scalar)."""
    prefix = tag_prefix(logger)
    values = [Summary.Value(tag=prefix + k, simple_value=float(v)) for k, v in metrics.items()]
    add_summary(logger.experiment, Summary(value=values), step)


def wandb_disabled(logger: Any) -> bool:
    """Whether ``logger`` is a ``WandbLogger`` whose run keeps nothing (``mode="disabled"``).

    Passed to it, or set by ``WANDB_MODE``: its run takes images and drops them (setups hunt
    79: every image of a run lost unsaid, the summary naming a folder never made).
    """
    if not is_logger(logger, "WandbLogger"):
        return False
    run = getattr(logger, "_experiment", None)
    mode = (getattr(logger, "_wandb_init", None) or {}).get("mode")
    return bool(getattr(run, "disabled", False)) or (mode or os.environ.get("WANDB_MODE")) in (
        "disabled",
    )


def _destination(logger: Any) -> TensorBoard | Wandb | MLflow | None:
    """Where ``logger`` takes images and text, or ``None`` (scalars only, e.g. CSV)."""
    if is_logger(logger, "TensorBoardLogger"):
        return TensorBoard(logger.experiment, tag_prefix(logger))
    if is_logger(logger, "WandbLogger"):
        return None if wandb_disabled(logger) else Wandb(logger)
    if is_logger(logger, "MLFlowLogger"):
        return MLflow(logger)
    return None


class Sink(SinkThread):
    """Writes one run's records. Get it with ``Sink.of(trainer)``.

    Attributes:
        active: False when the monitors must step aside (``fast_dev_run``).
        busy_seconds: time the sink's thread spent on jobs (off the training thread).
        busy_cpu_seconds: the CPU time of those jobs (less than ``busy_seconds`` when the
            thread waited for a core or for the GIL).
        boards: the run's TensorBoard loggers (their ``SummaryWriter`` and the prefix
            their logger puts before tags), for what goes to TensorBoard only
            (histograms, embeddings, layouts, twin runs).
        destinations: where images and text go (TensorBoard, W&B, MLflow or a folder).
        image_dir: the run's own folder, used when no logger takes images.
    """

    def __init__(self, trainer: Any) -> None:
        super().__init__()  # the thread's state: none started yet
        self.is_writer = trainer.is_global_zero
        dummy = any(is_logger(lg, "DummyLogger") for lg in trainer.loggers)
        self.active = not (dummy or getattr(trainer, "fast_dev_run", False))
        self.loggers = [lg for lg in trainer.loggers if not is_logger(lg, "DummyLogger")]
        writing = self.active and self.is_writer
        found = [_destination(lg) for lg in self.loggers] if writing else []
        self.destinations: list[Destination] = [d for d in found if d is not None]
        self.boards = [d for d in self.destinations if isinstance(d, TensorBoard)]
        base = next((d for lg in self.loggers for d in (lg.log_dir, lg.save_dir) if d), None)
        self.image_dir = Path(base or trainer.default_root_dir) / "cnnviz"
        self._said = WarningCache()
        self._started = False  # whether the loggers' experiments exist
        self._unwritable = False  # no folder of our own could be made: nothing is saved
        self._layers: dict[int, list[str]] = {}  # `cnnviz/layers` entries by step
        self._split_writers: dict[tuple[int, str], Any] = {}  # runs of their own, by split
        if not self.active:
            say(
                "lightning-cnnviz monitors step aside: this run uses a DummyLogger "
                "(`fast_dev_run`), so nothing would be kept. Run without `fast_dev_run` "
                "to see the visualisations."
            )
        if writing and not self.loggers:
            say(
                "lightning-cnnviz: this run has no logger (`logger=False`), so the monitors' "
                "scalars are not recorded; images and text go to a folder of this run. "
                "Pass a logger (e.g. TensorBoardLogger) to keep them all."
            )

    @classmethod
    def of(cls, trainer: Any) -> Sink:
        """The trainer's sink, made on first use (per set of loggers)."""
        key = tuple(id(lg) for lg in trainer.loggers)
        sink = cls.attached(trainer)
        if sink is None or sink._key != key:
            sink = cls(trainer)
            sink._key = key
            setattr(trainer, _ATTR, sink)
        return sink

    @classmethod
    def attached(cls, trainer: Any) -> Sink | None:
        """The trainer's sink if monitors made one (never makes one)."""
        return getattr(trainer, _ATTR, None)

    def viewers(self) -> list[str]:
        """How to look at what was written besides TensorBoard: each destination in words.

        Empty when TensorBoard takes the images (its command says it all) or nothing
        was written.
        """
        if any(isinstance(d, TensorBoard) for d in self.destinations):
            return []
        return [d.where for d in self.destinations]

    def _where(self) -> list[Destination]:
        """The destinations of images and text (on the training thread).

        A run without a logger that takes images (CSV only, or none) gets a folder of
        its own, made on first use (after the loggers made theirs) and named once.
        """
        if not self._started:  # made here, never by two threads at once (two W&B runs)
            self._started = True  # and before our folder (a CSV logger warns if its is not empty)
            for logger in self.loggers:
                # a Logger of the user's own need not have one (it is not abstract)
                with contextlib.suppress(Exception):
                    _ = logger.experiment
        if not self.destinations and not self._unwritable:
            try:
                self.image_dir = run_folder(self.image_dir.parent)
            except OSError as err:  # a file in the way, a read-only or full disk
                self._unwritable = True  # the monitors go on: findings, console, summary
                say(
                    f"lightning-cnnviz: no TensorBoard logger in this run, and no folder for "
                    f"images and text can be made under {self.image_dir.parent} "
                    f"({type(err).__name__}: {err}): they are not saved; the findings are "
                    "still told here"
                )
                return []
            self.destinations = [Folder(self.image_dir)]
            # without any logger, `logger=False` was said at the start: the folder is news
            none = "no TensorBoard logger in this run (nor W&B or MLflow); " if self.loggers else ""
            if any(wandb_disabled(lg) for lg in self.loggers):
                none = "W&B is disabled in this run (`mode='disabled'`: it keeps nothing); "
            self._said.info(f"lightning-cnnviz: {none}images and text go to {self.image_dir}")
        return self.destinations

    def tensorboard_only(self) -> bool:
        """Whether TensorBoard-only views (histograms, embeddings) can be written here."""
        return self.active and self.is_writer and bool(self.boards)

    def without_tensorboard(self) -> bool:
        """Whether this writer keeps views but has no TensorBoard logger for those only it shows.

        The monitor whose view is lost says so once, naming itself (setups hunt 68: an
        info line from here, quieted with Lightning's logger, was all a CSV run got).
        """
        return self.active and self.is_writer and not self.boards

    def layers(self, description: str, step: int, prefix: str = "") -> None:
        """Add a monitor's resolved selection to ``<prefix>cnnviz/layers`` at ``step``.

        TensorBoard shows one text per tag and step, so the entry written last holds
        every monitor's selection made at that step.
        """
        at_step = self._layers.setdefault(step, [])
        at_step.append(description)
        self.text(prefix + "cnnviz/layers", "\n\n".join(at_step), step)

    def image(self, tag: str, image: Tensor, step: int, palette: Tensor | None = None) -> None:
        """Write a uint8 ``(3, H, W)`` image, or ``(H, W)`` uint8 indices into ``palette``.

        A ``palette`` (``(256, 3)`` uint8, e.g. a colormap) stores one byte per pixel:
        a colormapped image encodes several times faster and needs no colouring first.
        """
        if not (self.active and self.is_writer):
            return
        host = self._host_copy(image, torch.uint8).contiguous()
        colours = None if palette is None else self._host_copy(palette, torch.uint8)
        where = self._where()
        self.later(lambda: self._write_image(where, tag, host, step, colours))

    def _write_image(
        self, where: list[Destination], tag: str, image: Tensor, step: int, palette: Tensor | None
    ) -> None:
        png = encode_png(image, palette)  # once, for every destination
        size = (image.shape[-2], image.shape[-1])
        for destination in where:
            if destination.thread_safe:
                destination.image(tag, png, size, step)
            else:  # written by the training thread, at its next `check`
                self._handoff.append(functools.partial(destination.image, tag, png, size, step))

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        """Write scalars to every logger (values already on the host)."""
        if not (self.active and self.is_writer) or not metrics:
            return
        for logger in self.loggers:
            if is_logger(logger, "TensorBoardLogger"):  # its writer queues events under a lock
                self.later(
                    lambda logger=logger, copy=dict(metrics): _write_scalars(logger, copy, step)
                )
            elif is_logger(logger, "MLFlowLogger"):
                logger.log_metrics({mlflow_name(k): v for k, v in metrics.items()}, step)
            else:  # other loggers may not be thread-safe: here, on the training thread
                logger.log_metrics(dict(metrics), step)

    def split_scalars(self, split: str, metrics: dict[str, float], step: int) -> None:
        """Write scalars into the TensorBoard run ``<log dir>/<split>`` (TensorBoard only).

        A train value and its val twin under one tag (``overfitting/loss``) in the runs
        ``train`` and ``val`` show as two colours in one chart, as Keras's callback
        writes them. Other loggers get the twins under their own names from ``scalars``.
        """
        if not (self.active and self.is_writer) or not metrics:
            return
        for i, board in enumerate(self.boards):
            writer = self._split_writers.get((i, split))
            if writer is None:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(Path(board.writer.get_logdir()) / split))
                self._split_writers[i, split] = writer
            values = [Summary.Value(tag=board.prefix + k, simple_value=float(v))
                      for k, v in metrics.items()]  # fmt: skip
            self.later(lambda w=writer, v=values: add_summary(w, Summary(value=v), step))

    def text(self, tag: str, text: str, step: int) -> None:
        """Write a Markdown text entry."""
        if not (self.active and self.is_writer):
            return
        for destination in self._where():
            destination.text(tag, text, step)

    def histogram(self, tag: str, values: Tensor, step: int) -> None:
        """Write a histogram (TensorBoard only; skipped elsewhere)."""
        if self.tensorboard_only():
            host = self._host_copy(values, torch.float32)
            for b in self.boards:
                self.later(lambda b=b: b.writer.add_histogram(b.prefix + tag, host, step))

    def embedding(self, tag: str, features: Tensor, step: int, **kwargs: Any) -> None:
        """Write an embedding for TensorBoard's projector (TensorBoard only)."""
        if not self.tensorboard_only():
            return
        host = features.detach().float().cpu()
        for board in self.boards:
            board.writer.add_embedding(host, tag=board.prefix + tag, global_step=step, **kwargs)
            config = Path(board.writer.get_logdir()) / "projector_config.pbtxt"
            config.write_text(latest_embedding_first(config.read_text()))

    def layout(self, make: Callable[[str], Any]) -> bool:
        """Write TensorBoard's custom-scalars layout ``make(prefix)`` to each TensorBoard.

        ``prefix``: what that logger puts before tags, so the charts match the tags as
        written. False where the run has no TensorBoard logger.
        """
        for board in self.boards:
            board.writer.add_custom_scalars(make(board.prefix))
        return bool(self.boards)

    def flush(self) -> None:
        """Wait for the sink's thread, flush pending records to disk, then ``check``."""
        self.wait()
        for board in self.boards:
            board.writer.flush()
        for writer in self._split_writers.values():  # closed: their threads end with the fit
            writer.close()
        self._split_writers.clear()
        self.check()
