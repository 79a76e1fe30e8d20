"""The run's input normalisation, read from its data module (for monitors that show inputs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from lightning_cnnviz import rendering

__all__ = ["Stats", "norm_stats", "to_image01"]

Stats = tuple[Sequence[float], Sequence[float]]


def norm_stats(trainer: Any) -> Stats | None:
    """``(mean, std)`` per channel from ``trainer.datamodule`` when it has both, else ``None``."""
    datamodule = getattr(trainer, "datamodule", None)
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if mean is None or std is None:
        return None
    as_list = [mean] if isinstance(mean, int | float) else list(mean)
    std_list = [std] if isinstance(std, int | float) else list(std)
    return [float(v) for v in as_list], [float(v) for v in std_list]


def to_image01(x: Tensor, stats: Stats | None) -> Tensor:
    """Inputs ``(N, C, H, W)`` as ``[0, 1]`` pictures: de-normalised, else rescaled per image."""
    if stats is not None and len(stats[0]) in (1, x.shape[1]) and len(stats[1]) in (1, x.shape[1]):
        return rendering.denormalize(x, *stats)
    return rendering.normalize(x, "per_image", dims=3)
