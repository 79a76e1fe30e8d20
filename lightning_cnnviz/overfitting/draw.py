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

__all__ = ["BARS_PER_ROW", "custom_scalars_layout", "per_class_image"]


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


BARS_PER_ROW = 20  # at 2x, 20 bars of 3-digit labels stay legible in a TensorBoard card


def per_class_image(per_class: Tensor, epoch: int, max_bars: int = 40) -> Tensor:
    """uint8 bar chart of per-class accuracy (the ``max_bars`` worst classes if more).

    Drawn at twice the glyph size, ``BARS_PER_ROW`` bars a row, so that the labels stay
    legible when TensorBoard scales the picture to its card width.
    """
    per_class = per_class.detach().float().cpu()
    order = torch.arange(len(per_class))
    if len(per_class) > max_bars:
        order = torch.nan_to_num(per_class, nan=2.0).argsort()[:max_bars].sort().values
    rows = [order[i : i + BARS_PER_ROW] for i in range(0, len(order), BARS_PER_ROW)]
    chart = rendering.vstack(
        [labels.bar_chart(per_class[row], [str(int(k)) for k in row]) for row in rows], gap=6
    )
    title = f"val accuracy per class (%), epoch {epoch}"
    return rendering.upscale(labels.caption(chart, title), 2)
