"""Labelled pictures stay legible in TensorBoard's image card (about 350 px wide).

TensorBoard scales an image to its card's width; a glyph drawn ``GLYPH_H * scale``
px tall then shows ``GLYPH_H * scale * 350 / width`` px tall. Each picture here is
drawn as the monitors draw it, and its width and glyph height are read from it.
"""

from __future__ import annotations

import pytest
import torch

from lightning_cnnviz.activations.dead import strip_append, strip_column
from lightning_cnnviz.activations.draw import dead_strip_image
from lightning_cnnviz.core import labels
from lightning_cnnviz.gradcam.draw import cam_grid
from lightning_cnnviz.overfitting.confusion import Pair, pairs_image
from lightning_cnnviz.overfitting.draw import per_class_image

SEVEN = labels.MIN_GLYPH_PX


def _shown(width: int, scale: int) -> float:
    return labels.GLYPH_H * scale * labels.CARD_WIDTH / width


@pytest.mark.parametrize(("count", "side"), [(8, 28), (16, 28), (16, 64), (16, 224), (3, 28)])
def test_card_gradcam_labels_at_least_7_px(count, side):
    torch.manual_seed(0)
    images, cams = torch.rand(count, 3, side, side), torch.rand(count, side, side)
    grid, _ = cam_grid(images, cams, torch.randn(count, 10), torch.randint(0, 10, (count,)))
    # the caption strip's ink: green or red text, GLYPH_H rows tall at scale 1
    ink_rows = (grid[:, 2 : 2 + labels.GLYPH_H + 2, :] > 100).any(0).any(1).sum()
    assert ink_rows >= labels.GLYPH_H - 3  # the glyphs really are drawn at scale 1
    assert _shown(grid.shape[-1], 1) >= SEVEN, grid.shape


@pytest.mark.parametrize("classes", [2, 10, 40, 100])
def test_card_per_class_labels_at_least_7_px(classes):
    image = per_class_image(torch.rand(classes), epoch=3)
    assert _shown(image.shape[-1], 2) >= SEVEN, image.shape  # drawn at 2x


@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 32), (3, 224), (4, 64)])
def test_card_confused_pairs_labels_at_least_7_px(channels, side):
    pairs = [Pair(100, 999, 128, 1.0, [1, 2, 3]) for _ in range(3)]
    examples = [torch.rand(3, channels, side, side) for _ in pairs]
    image = pairs_image(pairs, examples, epoch=1000)
    assert image.shape[0] == 3 and _shown(image.shape[-1], 2) >= SEVEN, image.shape  # 2x


@pytest.mark.parametrize(("units", "logs"), [(16, 1), (128, 9), (256, 128), (512, 40)])
def test_card_dead_strip_bounded_and_legible(units, logs):
    history = None
    for _ in range(logs):
        share = torch.rand(units) * (torch.arange(units) % 7 != 0)
        history = strip_append(history, strip_column(share))
    image = dead_strip_image(history, units, title="relu3")
    height, width = image.shape[-2:]
    assert width <= labels.CARD_WIDTH and _shown(width, 1) >= SEVEN
    shown_height = height * labels.CARD_WIDTH / width
    assert shown_height <= 420, (units, logs, tuple(image.shape))  # was ~2,300 px for 128 units
