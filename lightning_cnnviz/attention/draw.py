"""Attention maps as overlays on the probe images: one row per image, one column per map.

Nothing here knows about Lightning. Maps on the patch grid are upsampled
(bilinear) to the image size, each scaled to its own range, and blended over the
image; the first column is the image itself and the first row carries the
column titles.

Example::

    >>> import torch
    >>> image = attention_grid(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 4, 4), ["a", "b", "c"])
    >>> image.dtype, image.shape[0]
    (torch.uint8, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from lightning_cnnviz.core import rendering as R
from lightning_cnnviz.core.labels import caption

__all__ = ["attention_grid", "upsample"]


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, K, h, w) patch-grid maps -> (B, K, H, W), bilinear."""
    return F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)


def attention_grid(
    image01: Tensor,
    maps: Tensor,
    titles: Sequence[str],
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
    min_size: int = 64,
) -> Tensor:
    """uint8 (3, H, W): per image, the image then each of its ``maps`` over it.

    Args:
        image01: (B, 1|3, H, W) images in [0, 1].
        maps: (B, K, h, w) non-negative maps on the patch grid (or the image grid).
        titles: K column titles.
        cmap: colormap of the maps.
        alpha: their opacity over the image.
        min_size: tiles are upscaled (nearest) to at least this size.
    """
    size = (int(image01.shape[-2]), int(image01.shape[-1]))
    heat = R.normalize(upsample(maps, size), "per_image")  # each map on its own range
    rows = []
    for i in range(image01.shape[0]):
        tiles = [R.upscale_to(R.to_uint8(R.to_rgb(image01[i])), min_size)]
        tiles += [R.upscale_to(R.overlay(image01[i], heat[i, k], cmap, alpha), min_size)
                  for k in range(maps.shape[1])]  # fmt: skip
        if i == 0:
            tiles = [caption(t, title) for t, title in zip(tiles, ["image", *titles], strict=True)]
        rows.append(R.hstack(tiles, gap=2))
    return R.vstack(rows, gap=2)
