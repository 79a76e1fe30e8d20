"""Where images, scalars and text go. Knows about loggers, nothing about CNNs.

One ``Sink`` per trainer (shared by all monitors, so each message is said once):

* images and text go to the run's TensorBoard logger, or, where the run has
  none, to PNG / Markdown files under the run directory (one message says where);
* scalars go to every configured logger through Lightning's logger API
  (TensorBoard, CSV, W&B, MLflow, ...);
* ``fast_dev_run`` replaces loggers with a ``DummyLogger``: the sink is then
  inactive and monitors step aside, with one warning;
* only global rank zero writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import Tensor

__all__ = ["Sink"]

_ATTR = "_cnnviz_sink"


class Sink:
    """Writes one run's records. Get it with ``Sink.of(trainer)``.

    Attributes:
        active: False when the monitors must step aside (``fast_dev_run``).
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
        self._said_where = False
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
        if not self._said_where:
            self._said_where = True
            rank_zero_info(
                f"lightning-cnnviz: no TensorBoard logger in this run; images and text go to "
                f"{self.image_dir}"
            )

    def image(self, tag: str, image: Tensor, step: int) -> None:
        """Write a uint8 (3, H, W) image."""
        if not (self.active and self.is_writer):
            return
        image = image.detach().to("cpu", torch.uint8).contiguous()
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="CHW")
            return
        from PIL import Image

        self._fallback_note()
        path = self.image_dir / tag / f"step_{step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(os.fspath(path))

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        """Write scalars to every logger (values already on the host)."""
        if not (self.active and self.is_writer) or not metrics:
            return
        for logger in self.loggers:
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
            self.writer.add_histogram(tag, values.detach().float().cpu(), step)

    def embedding(self, tag: str, features: Tensor, step: int, **kwargs: Any) -> None:
        """Write an embedding for TensorBoard's projector (TensorBoard only)."""
        if self.active and self.is_writer and self.writer is not None:
            self.writer.add_embedding(
                features.detach().float().cpu(), tag=tag, global_step=step, **kwargs
            )

    def flush(self) -> None:
        """Flush pending records to disk."""
        if self.writer is not None:
            self.writer.flush()
