"""Linear layers as pictures: the weight matrix as a heatmap, units over the conv map they read.

Nothing here knows about Lightning. ``linear_heatmap`` draws any Linear weight
(rows are units, columns inputs, 0 neutral); for the first Linear after the
conv stack, ``first_linear_after_conv`` finds the ``C x H x W`` map it flattens
and ``render_units`` draws each unit's weights as ``C`` maps of ``H x W``.

Example::

    >>> import torch
    >>> render_units(torch.zeros(3, 2 * 4 * 4), (2, 4, 4), max_units=2, max_in_channels=8).shape
    torch.Size([3, 51, 51])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_cnnviz.core import rendering
from lightning_cnnviz.kernels import draw

__all__ = [
    "feature_grid_shape",
    "first_linear_after_conv",
    "linear_heatmap",
    "linear_unit_slices",
    "matrix_scale",
    "render_units",
    "shrink_matrix",
    "unit_columns",
]


def feature_grid_shape(in_features: int, channels: int) -> tuple[int, int] | None:
    """``(H, W)`` of the ``channels x H x W`` map a Linear flattens, if it is square.

    Example::

        >>> feature_grid_shape(1568, 32), feature_grid_shape(100, 3)
        ((7, 7), None)
    """
    if channels <= 0 or in_features % channels:
        return None
    side = math.isqrt(in_features // channels)
    return (side, side) if side * side * channels == in_features else None


def first_linear_after_conv(
    layers: dict[str, torch.nn.Module],
) -> tuple[str, tuple[int, int, int]] | None:
    """The first Linear after a Conv2d (in module order) and the ``(C, H, W)`` map it flattens.

    ``None`` when there is no such Linear or its input size is not ``C x H x H``
    for the last conv's ``C`` output channels.

    Example::

        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(1568, 10))
        >>> first_linear_after_conv(dict(net.named_children()))
        ('3', (32, 7, 7))
    """
    channels = None
    for name, module in layers.items():
        if isinstance(module, torch.nn.Conv2d):
            channels = module.out_channels
        elif isinstance(module, torch.nn.Linear) and channels is not None:
            shape = feature_grid_shape(module.in_features, channels)
            return (name, (channels, *shape)) if shape is not None else None
    return None


def linear_unit_slices(
    weight: Tensor, channels: int, shape: tuple[int, int], *, max_units: int, max_in_channels: int
) -> Tensor:
    """Each unit's weights over a flattened ``C x H x W`` map: ``(units, C', 1, H, W)`` float32.

    Example::

        >>> linear_unit_slices(torch.zeros(5, 2 * 3 * 3), 2, (3, 3), max_units=4,
        ...                    max_in_channels=8).shape
        torch.Size([4, 2, 1, 3, 3])
    """
    w = weight.detach()[:max_units].float().reshape(-1, channels, *shape)
    return w[:, :max_in_channels].unsqueeze(2)


def render_units(
    weight: Tensor, grid: tuple[int, int, int], *, max_units: int, max_in_channels: int
) -> Tensor:
    """Each unit's weights over the ``grid = (C, H, W)`` map it reads, a row of maps per unit.

    One diverging scale (0 neutral, ``matrix_scale``) over the units drawn; uint8 ``(3, H', W')``.
    The unit rows go into side-by-side columns (``unit_columns``) so that the picture is
    about as wide as tall: one tall column would be several card widths tall in TensorBoard.
    """
    channels, height, width = grid
    units = linear_unit_slices(
        weight, channels, (height, width), max_units=max_units, max_in_channels=max_in_channels
    )
    scale = matrix_scale(units)  # robust: the few largest weights would grey out the rest
    tiles = draw.slices_to_rgb(draw.normalize_slices(units, "layer_symmetric", scale), "coolwarm")
    per_unit = units.shape[1]
    rows = math.ceil(len(units) / unit_columns(len(units), per_unit)) * per_unit  # tiles
    blocks = [draw.tile_grid(tiles[i : i + rows], per_unit) for i in range(0, len(tiles), rows)]
    return rendering.hstack(blocks, gap=6, pad_value=255)  # a white gap between columns


def unit_columns(units: int, maps_per_unit: int) -> int:
    """Columns of unit rows that make a grid of ``units`` rows of square maps about square.

    Example::

        >>> unit_columns(64, 8), unit_columns(64, 1), unit_columns(4, 8)
        (3, 8, 1)
    """
    return max(1, min(units, round(math.sqrt(units / maps_per_unit))))


SATURATE = 0.02  # share of the largest |w| drawn at full colour: structure, not one outlier


def matrix_scale(weight: Tensor, saturate: float = SATURATE) -> Tensor:
    """The colour scale of a dense picture: the ``1 - saturate`` quantile of finite ``|w|``.

    Not the largest ``|w|``: a dense layer's weights are many small values and a few
    large ones, and scaling by the largest draws nearly every cell neutral grey. The
    largest ``saturate`` share is drawn at full colour instead. 0-d, on the weight's
    device; at least the tiniest positive float.

    Example::

        >>> float(matrix_scale(torch.tensor([0.0, 1.0, 2.0, 100.0]), saturate=0.5))
        1.5
    """
    magnitude = _finite(weight).abs().flatten()
    if magnitude.numel() > 1 << 20:  # quantile's limit is 16M; a strided sample is enough
        magnitude = magnitude[:: magnitude.numel() // (1 << 20) + 1]
    return torch.quantile(magnitude, 1.0 - saturate).clamp_min(torch.finfo(torch.float32).tiny)


def _finite(weight: Tensor) -> Tensor:
    return torch.nan_to_num(weight.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)


def shrink_matrix(weight: Tensor, max_side: int = 512) -> Tensor:
    """A weight matrix averaged down in equal groups to at most ``max_side`` per side, float32.

    Non-finite values count as 0; a side already short enough is kept.

    Example::

        >>> shrink_matrix(torch.ones(3, 1000)).shape
        torch.Size([3, 500])
    """
    w = _finite(weight)
    for dim in (0, 1):
        if w.shape[dim] > max_side:
            group = math.ceil(w.shape[dim] / max_side)
            pad = (0, group * math.ceil(w.shape[dim] / group) - w.shape[dim])
            moved = torch.nn.functional.pad(w.movedim(dim, -1), pad)
            w = moved.unflatten(-1, (-1, group)).mean(-1).movedim(-1, dim)
    return w


def linear_heatmap(
    weight: Tensor, *, max_side: int = 512, min_side: int = 32, scale: Tensor | None = None
) -> Tensor:
    """A Linear weight matrix ``(out, in)`` as a diverging heatmap (0 neutral), uint8 RGB.

    Rows are units, columns inputs. A side longer than ``max_side`` is averaged
    down in equal groups (``shrink_matrix``); a side shorter than ``min_side`` is
    stretched by an integer factor (cells may be non-square). The colour scale is
    ``matrix_scale`` of the averaged matrix (what is drawn), or ``scale`` when given.

    Example::

        >>> linear_heatmap(torch.randn(10, 1568)).shape
        torch.Size([3, 40, 392])
    """
    w = shrink_matrix(weight, max_side)
    if scale is None:
        scale = matrix_scale(w)
    image = rendering.apply_colormap(rendering.normalize(w, "symmetric", scale=scale), "coolwarm")
    factors = (max(1, min(math.ceil(min_side / size), max_side // size)) for size in w.shape)
    return rendering.upscale(image, tuple(factors))  # cells may be non-square
