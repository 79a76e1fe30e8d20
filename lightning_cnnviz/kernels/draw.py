"""Conv weights as pictures: the 2-D slices of each filter, scaled, coloured and laid out.

Nothing here knows about Lightning. ``kernel_slices`` turns a Conv1d/2d/3d
weight (grouped, depthwise, dilated) into the 2-D slices that are drawn,
``normalize_slices`` scales them (``per_filter`` or ``layer_symmetric``),
``slices_to_rgb`` colours them and ``tile_grid`` lays them out, a filter's
slices in one row; ``render_kernels`` does all of it for one layer.

Example::

    >>> import torch
    >>> kernel_slices(torch.zeros(4, 5, 3, 3), max_in_channels=2).shape
    torch.Size([4, 2, 1, 3, 3])
    >>> tile_grid(torch.zeros(4, 3, 3, 3, dtype=torch.uint8), per_row=2).shape
    torch.Size([3, 51, 51])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_cnnviz.core import rendering

__all__ = [
    "MIN_KERNEL_PX",
    "dilate",
    "kernel_slices",
    "layer_scale",
    "layout_per_row",
    "normalize_slices",
    "render_kernels",
    "slices_to_rgb",
    "tile_grid",
]

MIN_KERNEL_PX = 24  # a kernel's longer side is upscaled (nearest) to at least this


def dilate(weight: Tensor, dilation: Sequence[int]) -> Tensor:
    """Place the taps at their real spatial positions: zeros between them (the footprint).

    Example::

        >>> dilate(torch.ones(1, 1, 2, 2), (2, 2))[0, 0]
        tensor([[1., 0., 1.],
                [0., 0., 0.],
                [1., 0., 1.]])
    """
    dilation = tuple(dilation)
    if all(d == 1 for d in dilation):
        return weight
    ks = weight.shape[2:]
    size = [(k - 1) * d + 1 for k, d in zip(ks, dilation, strict=True)]
    out = weight.new_zeros(*weight.shape[:2], *size)
    index = (slice(None), slice(None), *[slice(None, None, d) for d in dilation])
    out[index] = weight
    return out


def kernel_slices(
    weight: Tensor,
    *,
    dilation: Sequence[int] = (),
    in_channel_mode: str = "tile",
    max_filters: int = 64,
    max_in_channels: int = 8,
    rgb: bool = False,
) -> Tensor:
    """The 2-D maps drawn for each filter: ``(filters, slices, 1 or 3, h, w)``, float32.

    One row of slices per filter: a Conv2d filter with one input channel (or
    depthwise) is one gray slice; with three input channels and ``rgb`` one
    colour slice; with more, ``"tile"`` gives one slice per input channel (the
    first ``max_in_channels``), ``"norm"`` one slice of the L2 norm over input
    channels. A Conv3d filter shows its depth slices side by side (per input
    channel in ``"tile"`` mode); a Conv1d filter is a ``1 x k`` strip. Grouped
    convs show the ``in/groups`` channels each filter really sees. Dilated
    kernels are drawn at their footprint (zeros between the taps).
    """
    w = weight.detach()[:max_filters].float()
    spatial = w.dim() - 2
    if dilation:
        w = dilate(w, dilation)
    if spatial == 1:
        w = w.unsqueeze(-2)  # (F, I, 1, k)
    if spatial <= 2:
        w = w.unsqueeze(2)  # (F, I, D=1, h, w)
    inputs = w.shape[1]
    if rgb and inputs == 3:
        return w.permute(0, 2, 1, 3, 4)  # (F, D, 3, h, w)
    if inputs > 1 and in_channel_mode == "norm":
        w = torch.linalg.vector_norm(w, dim=1, keepdim=True)
    elif inputs > 1:
        w = w[:, :max_in_channels]
    return w.flatten(1, 2).unsqueeze(2)  # (F, I*D, 1, h, w): channel-major, depth inner


def normalize_slices(slices: Tensor, mode: str, scale: Tensor | float | None = None) -> Tensor:
    """Map slices to [0, 1]: ``"per_filter"`` (min-max per filter) or ``"layer_symmetric"``.

    ``layer_symmetric`` maps ``w`` to ``0.5 + 0.5 * w / s`` with ``s`` = the largest
    ``|w|`` of the layer (or ``scale``), so 0 is exactly 0.5 (the neutral colour of
    a diverging colormap) and brightness is comparable across the layer's filters.
    Non-finite values become 0; constant filters map to 0.5.
    """
    if mode == "layer_symmetric":
        return rendering.normalize(slices, "symmetric", scale=scale)
    return rendering.normalize(slices, "per_image", dims=slices.dim() - 1, constant=0.5)


def slices_to_rgb(slices01: Tensor, cmap: str) -> Tensor:
    """``(F, S, C, h, w)`` in [0, 1] -> ``(F*S, 3, h, w)`` uint8 (colour slices kept as RGB)."""
    tiles = slices01.flatten(0, 1)
    if tiles.shape[1] == 3:
        return rendering.to_uint8(tiles)
    return rendering.apply_colormap(tiles[:, 0], cmap)


def tile_grid(tiles: Tensor, per_row: int, *, min_px: int = MIN_KERNEL_PX) -> Tensor:
    """Upscale uint8 tiles ``(N, 3, h, w)`` (nearest) and lay them out, ``per_row`` a row.

    Each tile is scaled by the smallest integer factor that brings its longer
    side to at least ``min_px``; tiles are separated (and framed) by 1 px lines
    of gray ``rendering.SEPARATOR``.
    """
    factor = max(1, math.ceil(min_px / max(tiles.shape[-2:])))
    tiles = rendering.upscale(tiles, factor)
    return rendering.grid(tiles, nrow=per_row, pad_value=rendering.SEPARATOR)


def layout_per_row(filters: int, slices: int, spatial: int) -> int:
    """Tiles per row: a filter's slices form one row; single 2-D tiles form a square grid."""
    if slices > 1 or spatial == 1:
        return slices
    return max(1, math.ceil(math.sqrt(filters)))


def layer_scale(weight: Tensor, *, in_channel_mode: str = "tile", rgb: bool = True) -> Tensor:
    """The ``layer_symmetric`` scale: the largest ``|value|`` drawn from any filter, 0-d.

    Over every filter and input channel of the layer, not only those drawn (in
    ``"norm"`` mode over the per-filter norm maps); non-finite values count as 0.
    Stays on the weight's device.

    Example::

        >>> layer_scale(torch.tensor([[[-3.0, 1.0]], [[2.0, float("nan")]]]))
        tensor(3.)
    """
    every = kernel_slices(
        weight, in_channel_mode=in_channel_mode, rgb=rgb,
        max_filters=weight.shape[0], max_in_channels=weight.shape[1],
    )  # fmt: skip
    return torch.nan_to_num(every, nan=0.0, posinf=0.0, neginf=0.0).abs().amax()


def render_kernels(
    weight: Tensor,
    *,
    normalization: str = "per_filter",
    cmap: str | None = None,
    dilation: Sequence[int] = (),
    in_channel_mode: str = "tile",
    max_filters: int = 64,
    max_in_channels: int = 8,
    rgb: bool = True,
    scale: Tensor | float | None = None,
) -> Tensor:
    """One conv weight as a uint8 ``(3, H, W)`` grid of its filters (the picture logged).

    ``cmap`` defaults to ``"gray"`` for ``per_filter`` and to the diverging
    ``"coolwarm"`` for ``layer_symmetric`` (0 is its neutral middle colour). The
    symmetric scale is the largest ``|w|`` of the whole layer, not only of the
    filters shown, so brightness means the same across a layer's filters:
    ``layer_scale(weight)``, or ``scale`` when given (then ``weight`` may hold only
    the first ``max_filters`` filters of the layer).

    Example::

        >>> edge = torch.tensor([[-1.0, 0.0, 1.0]] * 3).reshape(1, 1, 3, 3)
        >>> img = render_kernels(edge)
        >>> img.shape, img[0, 5, 5].item(), img[0, 5, 20].item()
        (torch.Size([3, 26, 26]), 0, 255)
    """
    options = {"dilation": dilation, "in_channel_mode": in_channel_mode, "rgb": rgb}
    slices = kernel_slices(
        weight, max_filters=max_filters, max_in_channels=max_in_channels, **options
    )
    if normalization == "layer_symmetric" and scale is None:
        scale = layer_scale(weight, in_channel_mode=in_channel_mode, rgb=rgb)
    x01 = normalize_slices(slices, normalization, scale)
    cmap = cmap or ("coolwarm" if normalization == "layer_symmetric" else "gray")
    tiles = slices_to_rgb(x01, cmap)
    per_row = layout_per_row(slices.shape[0], slices.shape[1], weight.dim() - 2)
    return tile_grid(tiles, per_row)
