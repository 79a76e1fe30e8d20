"""What the overfitting monitor shows besides scalars: the train-vs-val charts, per-class bars.

Nothing here knows about Lightning. ``custom_scalars_layout`` is the TensorBoard
*CUSTOM SCALARS* layout that overlays each train metric on its val twin;
``per_class_image`` draws validation accuracy per class with ``core.rendering``.

Example::

    >>> import torch
    >>> image = per_class_image(torch.tensor([1.0, 0.5, float("nan")]), epoch=3)
    >>> image.dtype, image.shape[0]
    (torch.uint8, 3)
    >>> layout = custom_scalars_layout(tag=lambda t: f"overfitting/{t}")
    >>> layout["overfitting/train vs val"]["loss"]
    ['Multiline', ['^overfitting/loss$']]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core import labels, rendering

__all__ = ["BARS_PER_ROW", "TWINS", "custom_scalars_layout", "per_class_image", "split_scalars"]


TWINS = {"loss": ("train_loss", "val_loss"), "accuracy": ("train_acc", "val_acc"),
         "ece": ("ece_train", "ece_val")}  # fmt: skip
"""Tag name -> the ``Evaluation`` fields of its train and val twins."""


def split_scalars(ev: Any, tag: Callable[[str], str]) -> dict[str, dict[str, float]]:
    """Each split's values under shared tags, for the TensorBoard runs ``train`` and ``val``.

    Example::

        >>> from types import SimpleNamespace
        >>> ev = SimpleNamespace(train_loss=0.1, val_loss=0.3, train_acc=None, val_acc=0.9,
        ...                      ece_train=None, ece_val=None)
        >>> twins = split_scalars(ev, tag=lambda t: f"overfitting/{t}")
        >>> twins["train"], twins["val"]
        ({'overfitting/loss': 0.1}, {'overfitting/loss': 0.3, 'overfitting/accuracy': 0.9})
    """
    out: dict[str, dict[str, float]] = {"train": {}, "val": {}}
    for name, fields in TWINS.items():
        for split, field in zip(out, fields, strict=True):
            if (value := getattr(ev, field)) is not None:
                out[split][tag(name)] = float(value)
    return out


def custom_scalars_layout(tag: Callable[[str], str]) -> dict[str, dict[str, list[Any]]]:
    """TensorBoard custom-scalars layout: train vs val overlaid per metric.

    Each chart matches one tag written into two runs (``train``, ``val``; see
    ``split_scalars``): TensorBoard gives each run its own colour.
    """

    def chart(*names: str) -> list[Any]:
        return ["Multiline", [rf"^{re.escape(tag(n))}$" for n in names]]

    return {
        tag("train vs val"): {
            "loss": chart("loss"),
            "accuracy": chart("accuracy"),
            "calibration error (ECE)": chart("ece"),
            "generalisation gap (val - train loss)": chart("gap_loss"),
            "generalisation gap (train - val accuracy)": chart("gap_acc"),
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
