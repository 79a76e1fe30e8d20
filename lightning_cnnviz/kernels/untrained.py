"""Conv kernels that look as initialised: neighbouring taps uncorrelated.

A trained kernel is smooth (neighbouring taps alike); a layer kept as set up (frozen,
left out of the optimiser, ``frozen.py``) at its random initialisation holds i.i.d.
values. ``untrained_look`` tells the two apart, which makes a frozen layer a problem
rather than a note (``frozen_check.py``).

Example::

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> untrained_look([torch.rand(64, 16, 3, 3, generator=g) - 0.5]) is not None
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["MIN_PAIRS", "UNTRAINED_R", "neighbour_correlation", "untrained_look"]

# Neighbouring taps of a trained kernel are alike (smooth filters): the pooled correlation
# read 0.35-0.6 in every conv layer of a small CNN after 300 steps on MNIST (Adam, SGD),
# 0.09-0.10 in a teacher trained one epoch on digits. At initialisation (torchvision
# resnet18, vgg11, densenet121, mobilenet_v3, efficientnet_b0; timm resnet10t,
# convnext_atto) whole models read |r| < 0.005, subsets of 1,500 pairs up to 0.06: the bar
# is 3 standard errors of a chance correlation over the pairs read, at least UNTRAINED_R
UNTRAINED_R = 0.05
MIN_PAIRS = 900  # pairs enough that chance correlations stay within 0.1 (3 standard errors)


MAX_SLICES = 1 << 14
"""Kernels (one input channel of one filter each) read per layer at most: a 2048x2048 conv
read whole made copies of eight times its 144 MB (setups hunt 55)."""


def neighbour_correlation(weight: Tensor) -> tuple[float, int] | None:
    """Pearson correlation of neighbouring taps of a conv weight, and how many pairs.

    Over every kernel (``MAX_SLICES`` evenly spaced at most) and every spatial axis;
    ``None`` for 1x1 kernels and dense weights.

    Example::

        >>> smooth = torch.arange(9.0).reshape(1, 1, 3, 3).repeat(4, 2, 1, 1)
        >>> r, pairs = neighbour_correlation(smooth)
        >>> round(r, 2), pairs
        (0.9, 96)
    """
    w = weight.detach()
    if w.dim() <= 2 or all(k == 1 for k in w.shape[2:]):
        return None
    slices = w.reshape(-1, *w.shape[2:])
    if len(slices) > MAX_SLICES:  # evenly spaced kernels: no copies of a large layer's size
        # integer steps: float32 rounds the last index past the end beyond 2**24 kernels
        at = torch.arange(MAX_SLICES, device=w.device) * (len(slices) - 1) // (MAX_SLICES - 1)
        slices = slices.index_select(0, at)
    w = slices.float().unsqueeze(1)  # (kernels, 1, *kernel): the spatial axes from 2 on
    a, b = [], []
    for axis in range(2, w.dim()):
        if w.shape[axis] > 1:
            a.append(w.narrow(axis, 0, w.shape[axis] - 1).flatten())
            b.append(w.narrow(axis, 1, w.shape[axis] - 1).flatten())
    if not a:
        return None
    x, y = torch.cat(a), torch.cat(b)
    x, y = x - x.mean(), y - y.mean()
    scale = float(x.norm() * y.norm())
    return (float((x * y).sum()) / scale if scale > 0 else 0.0), len(x)


def untrained_look(weights: Sequence[Tensor]) -> float | None:
    """The pooled neighbour correlation of ``weights`` where it says "as initialised".

    Kernels whose neighbouring taps are uncorrelated (``|r|`` within 3 standard errors of
    0 over the pairs read, and under ``UNTRAINED_R`` where they are many; at least
    ``MIN_PAIRS`` pairs) hold i.i.d. random values, as an initialisation leaves
    them; ``None`` where they look trained or there are too few pairs to tell.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> r = untrained_look([torch.rand(64, 16, 3, 3, generator=g) - 0.5])
        >>> abs(r) < 0.1, untrained_look([torch.ones(1, 1, 3, 3)])
        (True, None)
    """
    found = [c for w in weights if (c := neighbour_correlation(w)) is not None]
    pairs = sum(n for _, n in found)
    if pairs < MIN_PAIRS:
        return None
    r = sum(r * n for r, n in found) / pairs
    return r if abs(r) < max(UNTRAINED_R, 3.0 / math.sqrt(pairs)) else None
