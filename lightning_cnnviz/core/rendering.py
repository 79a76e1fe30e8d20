"""Tensors to uint8 images: normalisation, colormaps, overlays, upscaling, grids.

Nothing here knows about Lightning or pyplot. Images are channels-first tensors,
float in ``[0, 1]`` while being composed and ``uint8`` when they are ready for a
sink; every function that returns a finished picture returns ``uint8``.

* ``normalize`` maps any real tensor to ``[0, 1]``: ``per_image`` (each map on
  its own), ``shared`` (one range for the whole tensor, e.g. a layer's batch),
  ``symmetric`` (0 -> 0.5, so a diverging colormap shows 0 as neutral) or
  ``fixed`` (a given range, clamped). NaN and Inf never reach a pixel.
* ``apply_colormap`` looks values up in matplotlib's own 256-entry table of the
  colormap (gray, viridis, inferno, coolwarm), built once; no figure is drawn.
* ``grid`` lays tiles out as torchvision's ``make_grid`` does; ``thumbnails`` shrinks.
* Text on images (captions, bar labels) lives in ``labels``.

Example::

    >>> import torch
    >>> x = torch.tensor([[[-2.0, 0.0], [1.0, 2.0]]])
    >>> normalize(x, "symmetric")[0].tolist()
    [[0.0, 0.5], [0.75, 1.0]]
    >>> apply_colormap(torch.tensor([[0.0, 1.0]]), "gray")[:, 0].tolist()
    [[0, 255], [0, 255], [0, 255]]
    >>> upscale_to(torch.zeros(1, 28, 28), 112).shape
    torch.Size([1, 112, 112])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CMAPS",
    "SEPARATOR",
    "apply_colormap",
    "border",
    "colormap",
    "dim",
    "grid",
    "hstack",
    "normalize",
    "overlay",
    "thumbnails",
    "to_rgb",
    "to_uint8",
    "upscale",
    "upscale_cells_to",
    "upscale_to",
    "vstack",
]

CMAPS = ("gray", "viridis", "inferno", "coolwarm")
NormMode = Literal["per_image", "shared", "symmetric", "fixed"]
Color = tuple[int, int, int]
SEPARATOR = 40  # gray level of the 1 px lines between the tiles of kernel and feature-map grids


@cache
def colormap(name: str) -> Tensor:
    """The ``(256, 3)`` float lookup table of a colormap in ``CMAPS``, matplotlib's own colours.

    Example::

        >>> colormap("gray")[[0, 128, 255], 0].mul(255).round().tolist()
        [0.0, 128.0, 255.0]
    """
    if name not in CMAPS:
        raise ValueError(f"`cmap` must be one of {CMAPS}, got {name!r}")
    import matplotlib  # imported here: rendering itself needs only the 256 colours

    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
    return torch.tensor(rgba[:, :3], dtype=torch.float32)


def normalize(
    x: Tensor,
    mode: NormMode = "per_image",
    value_range: tuple[float | Tensor, float | Tensor] | None = None,
    dims: int = 2,
    *,
    scale: float | Tensor | None = None,
    constant: float = 0.0,
) -> Tensor:
    """Map ``x`` to float ``[0, 1]``; non-finite values count as 0.

    Args:
        x: Any real tensor.
        mode: ``per_image`` (min-max over the last ``dims`` dims of each item),
            ``shared`` (one min-max over the whole tensor), ``symmetric``
            (``0.5 + 0.5 * x / scale``, so that 0 -> 0.5) or ``fixed``
            (``value_range``, clamped).
        value_range: ``(low, high)`` for ``fixed`` (numbers or 0-d tensors).
        dims: How many trailing dims form one image for ``per_image``.
        scale: The ``|x|`` that ``symmetric`` maps to 0 and 1 (default: the largest
            ``|x|``), e.g. a whole layer's when only some of its filters are drawn.
        constant: What a constant image (``per_image``, ``shared``) maps to.

    Example::

        >>> normalize(torch.tensor([[1.0, 3.0], [2.0, 2.0]]), dims=1, constant=0.5).tolist()
        [[0.0, 1.0], [0.5, 0.5]]
        >>> normalize(torch.tensor([-1.0, 2.0]), "symmetric", scale=4.0).tolist()
        [0.375, 0.75]
    """
    x = torch.nan_to_num(x.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    if mode == "fixed":
        if value_range is None:
            raise ValueError("`value_range` is required for mode 'fixed'")
        low, high = value_range
        span = high - low
        span = span.clamp_min(1e-12) if isinstance(span, Tensor) else max(span, 1e-12)
        return ((x - low) / span).clamp(0, 1)
    if mode == "symmetric":
        s = x.abs().amax() if scale is None else torch.as_tensor(scale, device=x.device)
        return (x / s.clamp_min(1e-12) * 0.5 + 0.5).clamp(0, 1)
    if mode == "shared":
        low, high = x.amin(), x.amax()
    elif mode == "per_image":
        flat = x.flatten(-dims) if x.dim() >= dims else x.reshape(1, -1)
        low = flat.amin(-1).reshape(*flat.shape[:-1], *[1] * dims)
        high = flat.amax(-1).reshape(*flat.shape[:-1], *[1] * dims)
    else:
        raise ValueError(f"`mode` must be one of {NormMode.__args__}, got {mode!r}")
    span = high - low
    out = ((x - low) / span.clamp_min(1e-12)).clamp(0, 1)
    return out if constant == 0 else torch.where(span > 0, out, torch.full_like(out, constant))


def to_uint8(x01: Tensor) -> Tensor:
    """Float ``[0, 1]`` (NaN -> 0) to uint8."""
    return (torch.nan_to_num(x01.float(), nan=0.0).clamp(0, 1) * 255).round().to(torch.uint8)


def _float(img: Tensor) -> Tensor:
    return img.float() / 255 if img.dtype == torch.uint8 else img.float()


def apply_colormap(x01: Tensor, cmap: str = "viridis") -> Tensor:
    """Colour ``(..., H, W)`` values in ``[0, 1]`` -> uint8 ``(..., 3, H, W)``."""
    index = (torch.nan_to_num(x01.float(), nan=0.0).clamp(0, 1) * 255).round().long()
    return to_uint8(colormap(cmap).to(x01.device)[index].movedim(-1, -3))


def to_rgb(img: Tensor) -> Tensor:
    """Repeat a single channel ``(..., 1, H, W)`` to three; RGB passes through."""
    return img.expand(*img.shape[:-3], 3, *img.shape[-2:]) if img.shape[-3] == 1 else img


def upscale(img: Tensor, factor: int | tuple[int, int]) -> Tensor:
    """Nearest-neighbour upscaling of the last two dims by an integer ``factor`` or ``(fy, fx)``."""
    fy, fx = (factor, factor) if isinstance(factor, int) else factor
    if fy > 1:
        img = img.repeat_interleave(fy, dim=-2)
    return img.repeat_interleave(fx, dim=-1) if fx > 1 else img


def upscale_to(img: Tensor, min_size: int, max_side: int | None = None) -> Tensor:
    """Upscale by the smallest integer factor that makes ``min(H, W) >= min_size``.

    ``max_side``: the factor stops where the long side would pass it (a 16 x 512 strip
    grown to 56 rows was 1,792 px wide a tile: setups hunt 26).
    """
    factor = math.ceil(min_size / max(1, min(img.shape[-2:])))
    if max_side is not None:
        factor = max(1, min(factor, max_side // max(1, max(img.shape[-2:]))))
    return upscale(img, factor)


def upscale_cells_to(img: Tensor, min_size: int, min_factor: int = 2) -> Tensor:
    """Upscale height and width by separate integer factors, each making its side >= ``min_size``.

    For cell images such as a (channels x time) strip: one column does not blow the
    height up to ``min_size`` rows per channel; every cell is at least ``min_factor`` px.

    Example::

        >>> upscale_cells_to(torch.zeros(3, 128, 1), 64).shape
        torch.Size([3, 256, 64])
    """
    height, width = img.shape[-2:]
    factors = (max(min_factor, math.ceil(min_size / max(1, side))) for side in (height, width))
    return upscale(img, tuple(factors))


def overlay(image: Tensor, heat01: Tensor, cmap: str = "inferno", alpha: float = 0.5) -> Tensor:
    """Blend a heatmap ``(..., H, W)`` over an image ``(..., 1|3, H, W)`` -> uint8 RGB."""
    base = to_rgb(_float(image))
    heat = _float(apply_colormap(heat01, cmap))
    return to_uint8((1 - alpha) * base + alpha * heat)


def border(img: Tensor, color: Color = (255, 0, 0), width: int = 1) -> Tensor:
    """A copy of a uint8 ``(3, H, W)`` image with a coloured frame drawn inside its edge."""
    out = to_rgb(img).clone()
    paint = torch.tensor(color, dtype=torch.uint8, device=out.device)[:, None, None]
    for edge in (
        out[:, :width],
        out[:, -width:],
        out[:, :, :width],
        out[:, :, -width:],
    ):
        edge[:] = paint
    return out


def dim(img: Tensor, factor: float = 0.35) -> Tensor:
    """Darken a uint8 image (e.g. a dead channel) to ``factor`` of its brightness."""
    return to_uint8(_float(img) * factor)


def grid(
    tiles: Tensor | Sequence[Tensor], nrow: int = 8, padding: int = 1, pad_value: int = 0
) -> Tensor:
    """Lay out uint8 tiles ``(N, 1|3, H, W)`` (or differently sized ones) as ``make_grid`` does.

    ``nrow`` tiles a row, ``padding`` pixels of gray level ``pad_value`` between the
    tiles and around them. Unlike ``make_grid``, a single tile is framed too, so that
    one filter looks like many. Smaller tiles are padded at the bottom right.

    Example::

        >>> grid(torch.zeros(4, 3, 3, 3, dtype=torch.uint8), nrow=2, pad_value=40)[:, :2, 0]
        tensor([[40, 40],
                [40, 40],
                [40, 40]], dtype=torch.uint8)
    """
    if not isinstance(tiles, Tensor):
        tiles = torch.stack(_same_size(tiles, pad_value))
    tiles = to_rgb(tiles)
    count, channels, height, width = tiles.shape
    columns = min(nrow, count)
    rows = -(-count // columns)
    # make_grid's layout in one copy (it copies tile by tile): each cell is the tile
    # with ``padding`` on its top and left; empty cells and the far edges are padding
    cells = tiles.new_full((rows * columns, channels, height + padding, width + padding), pad_value)
    cells[:count, :, padding:, padding:] = tiles
    body = cells.reshape(rows, columns, channels, height + padding, width + padding)
    body = body.permute(2, 0, 3, 1, 4).reshape(channels, rows * (height + padding), -1)
    return F.pad(body, [0, padding, 0, padding], value=pad_value)


def thumbnails(images01: Tensor, size: int = 32) -> Tensor:
    """Images ``(N, C, H, W)`` shrunk (area average) so that ``max(H, W) <= size``, float.

    Keeps many images small: 1000 thumbnails of 32x32 (a projector sprite) are about 1 MB.

    Example::

        >>> thumbnails(torch.rand(2, 3, 224, 100)).shape
        torch.Size([2, 3, 32, 15])
    """
    height, width = images01.shape[-2:]
    factor = math.ceil(max(height, width) / size)
    if factor <= 1:
        return images01.float()
    return F.avg_pool2d(images01.float(), factor, ceil_mode=True)


def _same_size(images: Sequence[Tensor], pad_value: int = 0) -> list[Tensor]:
    h = max(i.shape[-2] for i in images)
    w = max(i.shape[-1] for i in images)
    return [
        F.pad(to_rgb(i), (0, w - i.shape[-1], 0, h - i.shape[-2]), value=pad_value) for i in images
    ]


def hstack(images: Sequence[Tensor], gap: int = 2, pad_value: int = 0) -> Tensor:
    """Place uint8 images side by side (top-aligned), ``gap`` pixels apart."""
    return _stack(images, gap, pad_value, axis=-1)


def vstack(images: Sequence[Tensor], gap: int = 2, pad_value: int = 0) -> Tensor:
    """Place uint8 images one above the other (left-aligned), ``gap`` pixels apart."""
    return _stack(images, gap, pad_value, axis=-2)


def _stack(images: Sequence[Tensor], gap: int, pad_value: int, axis: int) -> Tensor:
    other = -2 if axis == -1 else -1
    size = max(i.shape[other] for i in images)
    parts = []
    for k, image in enumerate(images):
        image = to_rgb(image)
        pad = [0, 0, 0, size - image.shape[other]] if axis == -1 else [0, size - image.shape[-1]]
        parts.append(F.pad(image, pad, value=pad_value))
        if gap and k < len(images) - 1:
            shape = list(parts[-1].shape)
            shape[axis] = gap
            parts.append(torch.full(shape, pad_value, dtype=image.dtype, device=image.device))
    return torch.cat(parts, dim=axis)
