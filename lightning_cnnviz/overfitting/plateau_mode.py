"""A ``ReduceLROnPlateau`` set to the wrong direction for the metric it watches.

Nothing here knows about Lightning beyond the scheduler configurations it is handed.
``mode="min"`` on an accuracy (or ``"max"`` on a loss) reads every improvement as a
plateau: the rate is cut at each validation while the model learns, and learning
freezes within a few epochs (hunt 24: ``mode="min"`` on ``val/acc`` cut it 10x an epoch,
val frozen at 91% from step 128, told late as an early decay or not at all). Read once
at the start of fit, from the scheduler's own settings.

Example::

    >>> from types import SimpleNamespace
    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1)
    >>> on = lambda metric: SimpleNamespace(scheduler=sched, monitor=metric, interval="epoch")
    >>> (text, figures), = plateau_checks([on("val_acc")])
    >>> text[:80]
    '`ReduceLROnPlateau` watches `val_acc` with `mode="min"`: it waits for `val_acc` '
    >>> plateau_checks([on("val_loss")])
    []
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torch.optim.lr_scheduler import ReduceLROnPlateau

__all__ = ["direction", "plateau_checks"]

# words of a metric's name that say which way is better (whole words of the name)
_HIGHER = {"acc", "accuracy", "f1", "fbeta", "precision", "recall", "auc", "auroc", "iou",
           "miou", "jaccard", "dice", "map", "ap", "r2", "psnr", "ssim"}  # fmt: skip
_LOWER = {"loss", "nll", "error", "err", "mse", "mae", "rmse", "ppl", "perplexity", "wer",
          "cer"}  # fmt: skip


def direction(name: str) -> str | None:
    """``"max"`` for a metric where higher is better, ``"min"`` where lower is, else None.

    Example::

        >>> direction("val/acc"), direction("valid_loss"), direction("val/top1_err")
        ('max', 'min', 'min')
        >>> direction("val_acc_loss") is None, direction("lr") is None  # both, or neither
        (True, True)
    """
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    higher, lower = bool(words & _HIGHER), bool(words & _LOWER)
    if higher == lower:
        return None
    return "max" if higher else "min"


def plateau_checks(configs: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(message, figures)]`` for each ``ReduceLROnPlateau`` whose mode opposes its metric.

    ``configs``: the trainer's ``lr_scheduler_configs`` (each with ``scheduler``,
    ``monitor`` and ``interval``).
    """
    found = []
    for config in configs:
        scheduler, monitor = getattr(config, "scheduler", None), getattr(config, "monitor", None)
        interval = getattr(config, "interval", "epoch")
        if not isinstance(scheduler, ReduceLROnPlateau) or not isinstance(monitor, str):
            continue
        better = direction(monitor)
        if better is None or better == scheduler.mode:
            continue
        way = "rise" if scheduler.mode == "max" else "fall"
        kind = "higher" if better == "max" else "lower"
        n, unit = scheduler.patience + 1, "step" if interval == "step" else "epoch"
        every = f"at every {unit}" if n == 1 else f"after every {n} {unit}s"
        text = (
            f'`ReduceLROnPlateau` watches `{monitor}` with `mode="{scheduler.mode}"`: it waits '
            f"for `{monitor}` to {way}, where {kind} is better, so it cuts the learning rate "
            f"{1 / scheduler.factor:.3g}x {every} while the model learns, until learning "
            f'stops. Set `mode="{better}"`.'
        )
        found.append((text, {"mode": scheduler.mode, "better": better, "factor": scheduler.factor}))
    return found
