"""What one ``OverfittingMonitor`` evaluation costs, pass by pass, in training steps.

One bare fit and one fit with ``OverfittingMonitor(budget=1.0)`` (every validation an
evaluation, the budget never stretching the schedule) of a torchvision ResNet on random
images with random labels (``models.RandomImagesDataModule``, 256 val images), 60 steps,
validation every 10 steps, 1 intra-op thread. The probe passes are timed by wrapping the
monitor's ``_logits`` (the val and train probes) and ``_batch_stats`` (BatchNorm on
batch statistics); the phases are the monitor's own ``timings``. Everything is divided by
the evaluations and by the bare run's median training step. ``plans`` lists, per
evaluation, whether the train and batch-statistics passes ran and the BatchNorm screen's
estimate (``overfitting/passes.py``).

Usage::

    PYTHONPATH=. python benchmarks/overfitting_passes.py [--models resnet18,resnet50]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import Classifier, RandomImagesDataModule
from overfitting_cost import StepTimer

from lightning_cnnviz.overfitting.callback import OverfittingMonitor

SHAPES = {"resnet18": (32, 32), "resnet50": (16, 64)}  # batch, image size
EVERY, VALIDATIONS = 10, 6


def timed_passes(monitor: OverfittingMonitor) -> tuple[dict[str, float], dict[str, int], list]:
    """Wrap the monitor's pass methods (on the instance): seconds and count per pass."""
    seconds: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    plans: list[tuple[bool, bool, float | None]] = []

    def wrap(name: str, label: Callable[[tuple], str]) -> None:
        method = getattr(monitor, name)

        def run(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args)
            finally:
                seconds[label(args)] += time.perf_counter() - start
                counts[label(args)] += 1

        setattr(monitor, name, run)

    wrap("_logits", lambda a: a[2])  # (trainer, pl_module, split)
    wrap("_batch_stats", lambda a: "batch_stats")
    measure = monitor._measure

    def measured(*args: Any) -> Any:
        out = measure(*args)
        p = monitor.plan
        if p is not None:
            plans.append((p.train, p.batch_stats, None if p.screen is None else round(p.screen, 3)))
        return out

    monitor._measure = measured  # type: ignore[method-assign]
    return seconds, counts, plans


def fit(arch: str, data: L.LightningDataModule, monitor: OverfittingMonitor | None) -> list[float]:
    torch.manual_seed(0)
    steps = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            default_root_dir=tmp,
            logger=TensorBoardLogger(tmp),
            callbacks=[steps, *([monitor] if monitor else [])],
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            accelerator="cpu",
            max_steps=EVERY * VALIDATIONS,
            val_check_interval=EVERY,
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
        )
        trainer.fit(Classifier(arch), datamodule=data)
    return steps.steps


def measure(arch: str) -> None:
    batch, size = SHAPES[arch]
    data = RandomImagesDataModule(EVERY * VALIDATIONS * batch, 256, size, batch)
    step = statistics.median(fit(arch, data, None)[3:])
    monitor = OverfittingMonitor(budget=1.0)
    seconds, counts, plans = timed_passes(monitor)
    fit(arch, data, monitor)
    events = max(monitor.events, 1)
    print(f"{arch} (batch {batch}, 3x{size}x{size}): bare step {step * 1e3:.0f} ms, "
          f"{monitor.events} evaluations")  # fmt: skip
    print("  phases, steps per evaluation:",
          {k: round(v / events / step, 2) for k, v in sorted(monitor.timings.items())})  # fmt: skip
    print("  passes, steps per evaluation:",
          {k: round(v / events / step, 2) for k, v in sorted(seconds.items())})  # fmt: skip
    print("  passes run:", dict(counts))
    print("  plans (train, batch_stats, screen):", plans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    for arch in args.models.split(","):
        measure(arch)


if __name__ == "__main__":
    main()
