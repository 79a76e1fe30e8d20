"""Pure kernel computations: spectral high-frequency share, change since the last log, tiles.

Nothing here knows about Lightning. ``hf_energy``, ``relative_change`` and
``mean_abs`` reduce a conv weight to 0-d tensors on its device; ``kernel_slices``
turns a Conv1d/2d/3d weight (grouped, depthwise, dilated) into the 2-D slices
that are drawn, and ``kernel_grid`` draws them as one uint8 image.

**hf_energy.** Each filter (all of its input-channel slices) is zero-padded to
``FFT_SIZE`` (16) taps per spatial axis, so that even a 3x3 kernel has a spectrum
fine enough to split, and transformed with an N-d FFT. Its *high-frequency
share* is the part of its spectral energy at a radius above ``cutoff`` cycles
per pixel (default 0.25, half the Nyquist frequency), summed over input
channels; ``hf_energy`` is the mean share over the filters that are not all
zero. White noise and a single tap (delta) give 207/256 = 0.809 in 2-D (the
share of the frequency grid outside the disc), smooth blobs 0.1-0.3, a
checkerboard close to 1. Dilation is not applied (the taps are what is learned).
1x1 kernels have no spatial spectrum: ``hf_energy`` is ``None`` for them.

Example::

    >>> import torch
    >>> delta = torch.zeros(1, 1, 3, 3)
    >>> delta[0, 0, 1, 1] = 1.0
    >>> float(hf_energy(delta))
    0.80859375
    >>> float(hf_energy(torch.ones(1, 1, 3, 3))) < 0.3
    True
    >>> float(relative_change(torch.full((2, 2), 3.0), torch.full((2, 2), 2.0)))
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_cnnviz.core import rendering

__all__ = [
    "FFT_SIZE",
    "HF_CUTOFF",
    "MIN_KERNEL_PX",
    "SEPARATOR",
    "dilate",
    "feature_grid_shape",
    "first_linear_after_conv",
    "hf_energy",
    "kernel_grid",
    "kernel_slices",
    "layout_per_row",
    "linear_heatmap",
    "linear_unit_slices",
    "mean_abs",
    "normalize_slices",
    "relative_change",
    "render_kernels",
    "slices_to_rgb",
]

FFT_SIZE = 16  # taps per axis the kernel is zero-padded to before the FFT
HF_CUTOFF = 0.25  # cycles per pixel; half the Nyquist frequency
MIN_KERNEL_PX = 24  # a kernel's longer side is upscaled (nearest) to at least this
SEPARATOR = (40, 40, 40)  # 1 px lines between tiles
_FFT_BUDGET = 1 << 22


def _spatial_dims(weight: Tensor) -> tuple[int, ...]:
    return tuple(range(2, weight.dim()))


def hf_energy(weight: Tensor, cutoff: float = HF_CUTOFF) -> Tensor | None:
    """Mean over filters of the spectral energy share above ``cutoff`` cycles/pixel.

    Args:
        weight: a conv weight ``(out, in/groups, *kernel)`` with 1-3 spatial axes.
        cutoff: radius of the low-frequency disc (ball), in cycles per pixel.

    Returns:
        A 0-d float32 tensor on the weight's device, or ``None`` for 1x1 kernels.
    """
    dims = _spatial_dims(weight)
    if not dims or all(weight.shape[d] == 1 for d in dims):
        return None
    w = weight.detach().float()
    sizes = [max(FFT_SIZE, weight.shape[d]) for d in dims]
    grids = torch.meshgrid(*[torch.fft.fftfreq(n, device=w.device) for n in sizes], indexing="ij")
    high = sum(g.square() for g in grids) > cutoff**2 + 1e-12
    # Chunk over filters so that a wide layer never holds more than ~4M spectrum entries.
    chunk = max(1, _FFT_BUDGET // max(1, w.shape[1] * math.prod(sizes)))
    shares, alive = [], []
    for part in w.split(chunk):
        power = torch.fft.fftn(part, s=sizes, dim=dims).abs().square().sum(dim=1)
        total = power.flatten(1).sum(1)
        shares.append((power * high).flatten(1).sum(1) / total.clamp_min(1e-30))
        alive.append(total > 0)
    share, live = torch.cat(shares), torch.cat(alive)
    return (share * live).sum() / live.sum().clamp_min(1)


def relative_change(weight: Tensor, previous: Tensor) -> Tensor:
    """``||W - W_prev|| / ||W_prev||`` (Frobenius), 0-d float32; 0 when both are zero."""
    w, p = weight.detach().float(), previous.detach().float()
    return torch.linalg.vector_norm(w - p) / torch.linalg.vector_norm(p).clamp_min(1e-12)


def mean_abs(weight: Tensor) -> Tensor:
    """Mean absolute weight, 0-d float32."""
    return weight.detach().float().abs().mean()


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
    x = torch.nan_to_num(slices.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if mode == "layer_symmetric":
        s = x.abs().amax() if scale is None else torch.as_tensor(scale, device=x.device)
        return (0.5 + 0.5 * x / s.clamp_min(1e-12)).clamp(0.0, 1.0)
    flat = x.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)
    span = hi - lo
    out = (flat - lo[:, None]) / span.clamp_min(1e-12)[:, None]
    out = torch.where(span[:, None] > 0, out, torch.full_like(out, 0.5))
    return out.view_as(x).clamp(0.0, 1.0)


def slices_to_rgb(slices01: Tensor, cmap: str) -> Tensor:
    """``(F, S, C, h, w)`` in [0, 1] -> ``(F*S, 3, h, w)`` uint8 (colour slices kept as RGB)."""
    tiles = slices01.flatten(0, 1)
    if tiles.shape[1] == 3:
        return (tiles * 255).round().to(torch.uint8)
    return rendering.apply_colormap(tiles[:, 0], cmap)


def kernel_grid(
    tiles: Tensor, per_row: int, *, min_px: int = MIN_KERNEL_PX, padding: int = 1
) -> Tensor:
    """Upscale uint8 tiles ``(N, 3, h, w)`` (nearest) and lay them out, ``per_row`` a row.

    Each tile is scaled by the smallest integer factor that brings its longer
    side to at least ``min_px``; tiles are separated (and framed) by ``padding``
    pixels of ``SEPARATOR``.

    Example::

        >>> kernel_grid(torch.zeros(4, 3, 3, 3, dtype=torch.uint8), per_row=2).shape
        torch.Size([3, 51, 51])
    """
    n, _, h, w = tiles.shape
    factor = max(1, math.ceil(min_px / max(h, w)))
    tiles = tiles.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    th, tw = h * factor, w * factor
    rows = math.ceil(n / per_row)
    canvas = torch.tensor(SEPARATOR, dtype=torch.uint8, device=tiles.device)[:, None, None]
    canvas = canvas.expand(3, rows * (th + padding) + padding, per_row * (tw + padding) + padding)
    canvas = canvas.clone()
    for i in range(n):
        r, c = divmod(i, per_row)
        top, left = padding + r * (th + padding), padding + c * (tw + padding)
        canvas[:, top : top + th, left : left + tw] = tiles[i]
    return canvas


def layout_per_row(filters: int, slices: int, spatial: int) -> int:
    """Tiles per row: a filter's slices form one row; single 2-D tiles form a square grid."""
    if slices > 1 or spatial == 1:
        return slices
    return max(1, math.ceil(math.sqrt(filters)))


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
) -> Tensor:
    """One conv weight as a uint8 ``(3, H, W)`` grid of its filters (the picture logged).

    ``cmap`` defaults to ``"gray"`` for ``per_filter`` and to the diverging
    ``"coolwarm"`` for ``layer_symmetric`` (0 is its neutral middle colour). The
    symmetric scale is the largest ``|w|`` of the whole layer, not only of the
    filters shown, so brightness means the same across a layer's filters.

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
    scale = None
    if normalization == "layer_symmetric":  # over every filter and input channel of the layer
        every = kernel_slices(
            weight, max_filters=weight.shape[0], max_in_channels=weight.shape[1], **options
        )
        scale = torch.nan_to_num(every, nan=0.0, posinf=0.0, neginf=0.0).abs().amax()
    x01 = normalize_slices(slices, normalization, scale)
    cmap = cmap or ("coolwarm" if normalization == "layer_symmetric" else "gray")
    tiles = slices_to_rgb(x01, cmap)
    per_row = layout_per_row(slices.shape[0], slices.shape[1], weight.dim() - 2)
    return kernel_grid(tiles, per_row)


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


def linear_heatmap(weight: Tensor, *, max_side: int = 512, min_side: int = 32) -> Tensor:
    """A Linear weight matrix ``(out, in)`` as a diverging heatmap (0 neutral), uint8 RGB.

    Rows are units, columns inputs. A side longer than ``max_side`` is averaged
    down in equal groups; a side shorter than ``min_side`` is stretched by an
    integer factor (cells may be non-square).

    Example::

        >>> linear_heatmap(torch.randn(10, 1568)).shape
        torch.Size([3, 40, 392])
    """
    w = torch.nan_to_num(weight.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    scale = w.abs().amax()
    for dim in (0, 1):
        if w.shape[dim] > max_side:
            group = math.ceil(w.shape[dim] / max_side)
            pad = (0, group * math.ceil(w.shape[dim] / group) - w.shape[dim])
            moved = torch.nn.functional.pad(w.movedim(dim, -1), pad)
            w = moved.unflatten(-1, (-1, group)).mean(-1).movedim(-1, dim)
    x01 = (0.5 + 0.5 * w / scale.clamp_min(1e-12)).clamp(0.0, 1.0)
    image = rendering.apply_colormap(x01, "coolwarm")
    for dim, size in ((-2, w.shape[0]), (-1, w.shape[1])):  # cells may be non-square
        factor = max(1, min(math.ceil(min_side / size), max_side // size))
        image = image.repeat_interleave(factor, dim=dim)
    return image
