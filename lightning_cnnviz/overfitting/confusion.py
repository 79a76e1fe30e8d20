"""Which classes the model confuses: the most confused pairs and the confusion-matrix image.

Nothing here knows about Lightning. ``confused_pairs`` reads the val probe's
confusion counts (row = true class, column = predicted, from
``metrics.confusion_counts``) and names the pairs with the most mistakes, with
example probe images (their dataset indices); ``confusion_image`` draws the matrix
and ``pairs_image`` each pair's example images with ``core.rendering``.

Example::

    >>> counts = [[8.0, 2.0, 0.0], [0.0, 10.0, 0.0], [1.0, 5.0, 4.0]]
    >>> pairs = confused_pairs(counts, predicted=[0] * 8 + [1] * 2 + [1] * 10 + [0] + [1] * 5
    ...                        + [2] * 4, labels=[0] * 10 + [1] * 10 + [2] * 10,
    ...                        indices=list(range(100, 130)))
    >>> [(p.true, p.predicted, p.count, p.share) for p in pairs]
    [(2, 1, 5, 0.5), (0, 1, 2, 0.2), (2, 0, 1, 0.1)]
    >>> pairs[0].examples
    [121, 122, 123]
    >>> print(pairs_text(pairs[:1]))
    - true **2** taken for **1**: 5 of 10 probe images (50%), e.g. dataset indices 121, 122, 123
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_cnnviz.core import labels as text_labels
from lightning_cnnviz.core import rendering

__all__ = [
    "MAX_DRAWN",
    "Pair",
    "confused_pairs",
    "confusion_image",
    "fit_box",
    "pairs_image",
    "pairs_text",
]


@dataclass(frozen=True)
class Pair:
    """``count`` probe images of class ``true`` predicted as ``predicted`` (``share`` of the class).

    ``examples`` are their dataset indices (up to three).
    """

    true: int
    predicted: int
    count: int
    share: float
    examples: list[int]


def confused_pairs(
    counts: Sequence[Sequence[float]],
    predicted: Sequence[int],
    labels: Sequence[int],
    indices: Sequence[int],
    top: int = 3,
) -> list[Pair]:
    """The ``top`` (true, predicted) pairs with the most mistakes, most first."""
    k = len(counts)
    off = [(counts[t][p], t, p) for t in range(k) for p in range(k) if t != p and counts[t][p] > 0]
    pairs = []
    for count, t, p in sorted(off, key=lambda c: (-c[0], c[1], c[2]))[:top]:
        total = sum(counts[t])
        examples = [
            int(indices[i])
            for i, (y, yhat) in enumerate(zip(labels, predicted, strict=True))
            if y == t and yhat == p
        ][:3]
        pairs.append(Pair(t, p, int(count), count / total if total else 0.0, examples))
    return pairs


def pairs_text(pairs: Sequence[Pair]) -> str:
    """One Markdown line per pair."""
    return "\n".join(
        f"- true **{p.true}** taken for **{p.predicted}**: {p.count} of "
        f"{round(p.count / p.share) if p.share else 0} probe images ({p.share:.0%}), e.g. "
        f"dataset indices {', '.join(map(str, p.examples))}"
        for p in pairs
    )


MAX_DRAWN = 256  # classes a confusion matrix is drawn for (CIFAR-100's 100 at 4 pixels a cell)
_SIDE = 480  # pixels the matrix takes at most, 12 a cell up to 40 classes


def confusion_image(counts: Sequence[Sequence[float]], epoch: int, cell: int = 12) -> Tensor:
    """uint8 ``(3, H, W)`` image of the row-normalised confusion matrix (true rows).

    Cells shrink (to 2 pixels) where ``cell`` pixels a class would pass ``_SIDE``.

    Example::

        >>> confusion_image([[5, 1], [0, 6]], 3).shape[1:] >= (24, 24)
        True
        >>> confusion_image(torch.eye(100).tolist(), 3).shape[2]  # 4 pixels a class
        400
    """
    matrix = torch.tensor(counts, dtype=torch.float32)
    rows = matrix.sum(dim=1, keepdim=True).clamp_min(1)
    heat = rendering.apply_colormap((matrix / rows) ** 0.5, "viridis")  # sqrt: rare errors show
    image = rendering.upscale(heat, max(2, min(cell, _SIDE // max(1, len(matrix)))))
    title = f"val probe confusion (rows: true, columns: predicted), epoch {epoch}"
    return text_labels.caption(image, title)


THUMB_PX = 48  # an example image's side: a digit or a small photo stays recognisable


def fit_box(images01: Tensor, height: int, max_width: int) -> Tensor:
    """Images ``(N, C, H, W)`` scaled to ``height`` rows, narrower where ``max_width`` binds.

    One factor for both sides (the aspect kept): a 16 x 512 text line fits a 48-row box
    capped at 192 columns as 6 x 192, where shrinking by the long side and growing by the
    short one drew 48 x 1128 blocks of smeared stripes (setups hunt 26). Area averaging
    where it shrinks, nearest where it grows (pixels stay crisp).

    Example::

        >>> fit_box(torch.rand(2, 1, 16, 512), 48, 192).shape
        torch.Size([2, 1, 6, 192])
        >>> fit_box(torch.rand(1, 3, 28, 28), 48, 192).shape
        torch.Size([1, 3, 48, 48])
    """
    h, w = images01.shape[-2:]
    scale = min(height / max(1, h), max_width / max(1, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    mode = "area" if scale < 1 else "nearest"
    return F.interpolate(images01.float(), size=size, mode=mode)


def pairs_image(pairs: Sequence[Pair], examples: Sequence[Tensor], epoch: int) -> Tensor:
    """uint8 ``(3, H, W)``: a row per pair, its label and its example images.

    ``examples[i]`` holds pair ``i``'s images as float ``[0, 1]`` ``(n, C, h, w)``
    (``C`` 1 or 3), in the order of ``pairs[i].examples``. Drawn at twice the glyph
    size so that the labels stay legible in a TensorBoard card.

    Example::

        >>> pair = Pair(true=7, predicted=1, count=2, share=0.2, examples=[11, 12])
        >>> pairs_image([pair], [torch.rand(2, 1, 28, 28)], epoch=3).shape[0]
        3
    """
    rows = []
    for pair, images in zip(pairs, examples, strict=True):
        images = images.float().clamp(0, 1)
        if images.shape[1] not in (1, 3):
            images = images.mean(1, keepdim=True)
        thumbs = fit_box(images, THUMB_PX, 4 * THUMB_PX)  # wide images capped
        tiles = [rendering.to_uint8(rendering.to_rgb(t)) for t in thumbs]
        strip = rendering.hstack(tiles, gap=2) if tiles else torch.zeros(3, THUMB_PX, THUMB_PX)
        label = f"true {pair.true} -> {pair.predicted}: {pair.count} ({pair.share:.0%})"
        rows.append(text_labels.caption(strip.to(torch.uint8), label))
    title = f"most confused val probe pairs, examples, epoch {epoch}"
    return rendering.upscale(text_labels.caption(rendering.vstack(rows, gap=4), title), 2)
