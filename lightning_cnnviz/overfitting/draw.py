"""What the overfitting monitor shows besides scalars: the train-vs-val charts, per-class bars.

Nothing here knows about Lightning. ``custom_scalars_layout`` is the TensorBoard
*CUSTOM SCALARS* layout that overlays each train metric on its val twin;
``per_class_image`` draws validation accuracy per class with ``core.rendering``.

Example::

    >>> import torch
    >>> image = per_class_image(torch.tensor([1.0, 0.5, float("nan")]), epoch=3)
    >>> image.dtype, image.shape[0]
    (torch.uint8, 3)
    >>> layout = custom_scalars_layout("tl", "vl", "ta", "va", tag=lambda t: f"overfitting/{t}")
    >>> layout["overfitting/train vs val"]["loss"]
    ['Multiline', ['^tl(_epoch)?$', '^vl(_epoch)?$']]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core import labels, rendering

__all__ = ["custom_scalars_layout", "per_class_image"]


def custom_scalars_layout(
    train_loss: str, val_loss: str, train_acc: str, val_acc: str, tag: Callable[[str], str]
) -> dict[str, dict[str, list[Any]]]:
    """TensorBoard custom-scalars layout: train vs val overlaid per metric (regex tag sets)."""

    def pair(a: str, b: str) -> list[Any]:
        return ["Multiline", [rf"^{re.escape(k)}(_epoch)?$" for k in (a, b)]]

    return {
        tag("train vs val"): {
            "loss": pair(train_loss, val_loss),
            "accuracy": pair(train_acc, val_acc),
            "calibration error (ECE)": pair(tag("ece_train"), tag("ece_val")),
            "generalisation gap": pair(tag("gap_loss"), tag("gap_acc")),
        }
    }


def per_class_image(per_class: Tensor, epoch: int, max_bars: int = 40) -> Tensor:
    """uint8 bar chart of per-class accuracy (the ``max_bars`` worst classes if more)."""
    per_class = per_class.detach().float().cpu()
    order = torch.arange(len(per_class))
    if len(per_class) > max_bars:
        order = torch.nan_to_num(per_class, nan=2.0).argsort()[:max_bars].sort().values
    chart = labels.bar_chart(per_class[order], [str(int(k)) for k in order])
    title = f"val accuracy per class (%), epoch {epoch}"
    return rendering.upscale(labels.caption(chart, title), 2)
