"""Pure parts of the embedding view: which points, their features, and how far classes lie apart.

Nothing here knows about Lightning. The ``EmbeddingMonitor`` embeds the probe
plus up to ``max_points`` validation samples drawn by index (``draw_indices``),
reduces each layer's output to one vector per sample (``pool_features``: global
average over the spatial dims of a conv map), sends them to TensorBoard's
projector with small thumbnails (``core.rendering.thumbnails``) and logs one
cheap number over time, ``class_separation``.

Example::

    >>> import torch
    >>> features = torch.tensor([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 2.0]])
    >>> round(float(class_separation(features, torch.tensor([0, 0, 1, 1]))), 6)
    10.0
    >>> pool_features(torch.ones(3, 4, 5, 5)).shape
    torch.Size([3, 4])
    >>> draw_indices(10, 5, [7, 2], torch.Generator().manual_seed(0))[:2]
    [7, 2]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["class_separation", "draw_indices", "pool_features"]


def draw_indices(
    size: int, max_points: int, keep: Sequence[int], generator: torch.Generator
) -> list[int]:
    """``keep`` (the probe) first, then other indices of ``range(size)`` in a seeded random order.

    At most ``max_points`` in all (``keep`` is cut if it alone is longer); no repeats.
    """
    picked = list(dict.fromkeys(int(i) for i in keep))[:max_points]
    if len(picked) >= max_points:
        return picked
    taken = set(picked)
    for index in torch.randperm(size, generator=generator).tolist():
        if index not in taken:
            picked.append(index)
            if len(picked) == max_points:
                break
    return picked


def pool_features(x: Tensor) -> Tensor:
    """One float32 vector per sample: ``(N, C, *spatial)`` -> mean over the spatial dims ``(N, C)``.

    ``(N, D)`` passes through; ``(N,)`` becomes ``(N, 1)``.
    """
    x = x.detach().float()
    if x.dim() == 1:
        return x[:, None]
    return x.flatten(2).mean(2) if x.dim() > 2 else x


def class_separation(features: Tensor, labels: Tensor) -> Tensor:
    """Mean distance between class centroids / mean distance of a point to its own centroid.

    Scale-free: 1 means classes lie about as far apart as their points scatter,
    larger means clusters that separate. ``NaN`` with fewer than two classes or
    when every point sits on its centroid. Computed on the features' device.

    Args:
        features: ``(N, D)``.
        labels: ``(N,)`` integer classes.
    """
    features = features.float()
    labels = labels.to(features.device).long()
    classes, index = labels.unique(return_inverse=True)
    if classes.numel() < 2:
        return torch.tensor(math.nan, device=features.device)
    sums = features.new_zeros(classes.numel(), features.shape[1])
    sums.index_add_(0, index, features)
    counts = torch.bincount(index, minlength=classes.numel()).clamp_min(1)
    centroids = sums / counts[:, None]
    between = F.pdist(centroids).mean()
    within = (features - centroids[index]).norm(dim=1).mean()
    return torch.where(within > 0, between / within, torch.full_like(between, math.nan))
