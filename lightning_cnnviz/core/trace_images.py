"""How many probe images a set-up pass takes: one, unless the model cannot take one.

The monitors learn a model's call sites, output form and layers from a pass on the
probe's first image. A BatchNorm without running statistics normalises by the batch's
own statistics in eval mode too, and a batch of one gives a ``(1, C)`` input no
statistics: "Expected more than 1 value per channel" (setups hunt 79: a
``BatchNorm1d(track_running_stats=False)`` head stepped four monitors aside for the run).
Such a model is traced on two images.

Example::

    >>> from torch import nn
    >>> trace_images(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    1
    >>> trace_images(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)))
    2
"""

from __future__ import annotations

from torch import nn

__all__ = ["trace_images"]


def trace_images(model: nn.Module) -> int:
    """The fewest images a pass through ``model`` takes: 2 where a BatchNorm keeps no statistics."""
    batch_only = any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None
        for m in model.modules()
    )
    return 2 if batch_only else 1
