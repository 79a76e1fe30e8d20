"""Pure feature-map computations: channel choice, ranges, pictures.

Nothing here knows about Lightning. Activations are ``(N, C, H, W)`` tensors
(detached float32 copies from a probe pass) and stay on their device; every
function that returns a picture returns uint8 ``(3, H, W)``. Which layers are
drawn, and which activation and pooling follow a conv, is ``layers.py``'s part.

* ``channel_activity`` / ``dead_channels`` / ``choose_channels``: which channels to
  show (``top_k`` most active on the probe, ``all`` capped, or an explicit list)
  and which were zero on the whole probe (drawn dimmed with a red border).
* ``value_range`` / ``normalize_maps``: the ``per_layer_fixed`` range (kept from
  the first log) and maps scaled to ``[0, 1]`` with it, or each on its own.
* ``mean_heat``: the mean ``|activation|`` over channels, upsampled to the input.
* ``layer_grid`` / ``stages_grid``: the logged pictures.

Example::

    >>> import torch
    >>> act = torch.zeros(2, 3, 4, 4)
    >>> act[:, 1] = 2.0
    >>> act[0, 2, 0, 0] = 1.0
    >>> channel_activity(act).tolist(), dead_channels(act).tolist()
    ([0.0, 2.0, 0.03125], [True, False, False])
    >>> choose_channels(channel_activity(act), "top_k", k=2).tolist()
    [1, 2]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_cnnviz.core import rendering
from lightning_cnnviz.core.inputs import Norm, to_image01
from lightning_cnnviz.core.labels import draw_text, draw_texts, text_size

__all__ = [
    "channel_activity",
    "choose_channels",
    "dead_channels",
    "input_image",
    "layer_grid",
    "mean_heat",
    "normalize_maps",
    "resize",
    "stages_grid",
    "tile_shape",
    "value_range",
]

HEADER = (200, 200, 200)  # label colour
RED = (255, 0, 0)


def channel_activity(act: Tensor) -> Tensor:
    """Mean ``|a|`` of each channel over samples and positions, ``(C,)`` (non-finite -> 0)."""
    return torch.nan_to_num(act.float(), nan=0.0, posinf=0.0, neginf=0.0).abs().mean((0, 2, 3))


def dead_channels(act: Tensor) -> Tensor:
    """Channels that are exactly zero on every sample and position, ``(C,)`` bool."""
    return act.float().abs().amax((0, 2, 3)) == 0


def choose_channels(
    activity: Tensor, select: str | Sequence[int], k: int = 8, max_channels: int = 32
) -> Tensor:
    """Indices of the channels to show, ascending: ``top_k``, ``all`` (capped) or a list.

    An explicit list keeps the channels the layer has (layers differ in width),
    at most ``max_channels`` of them; it may come back empty.
    """
    count = activity.numel()
    if select == "top_k":
        return activity.topk(min(k, count)).indices.sort().values
    if select == "all":
        return torch.arange(min(count, max_channels), device=activity.device)
    kept = [c for c in select if 0 <= c < count][:max_channels]
    return torch.as_tensor(kept, dtype=torch.long, device=activity.device)


def value_range(act: Tensor) -> Tensor:
    """``[min, max]`` over the finite values of a layer's activations (``[0, 0]`` if none)."""
    x = act.float()
    finite = torch.isfinite(x)
    low = torch.where(finite, x, torch.inf).amin()
    high = torch.where(finite, x, -torch.inf).amax()
    return torch.where(finite.any(), torch.stack([low, high]), torch.zeros(2, device=x.device))


def normalize_maps(maps: Tensor, mode: str, value_range: Tensor | None = None) -> Tensor:
    """``per_map`` (each map min-max) or a fixed ``value_range`` ``[low, high]`` -> ``[0, 1]``."""
    if mode == "per_map" or value_range is None:
        return rendering.normalize(maps, "per_image")
    return rendering.normalize(maps, "fixed", tuple(value_range.to(maps.device).unbind()))


def tile_shape(
    height: int, width: int, tile_size: int, max_width: int | None = None
) -> tuple[int, int]:
    """Tile size for an input: an integer upscale to ``tile_size`` on the short side, or a cap.

    ``max_width`` caps the tile's width (so that a grid of them fits a card legibly).

    Example::

        >>> tile_shape(28, 28, 56), tile_shape(20, 30, 56), tile_shape(224, 224, 56)
        ((56, 56), (60, 90), (56, 56))
        >>> tile_shape(28, 28, 56, max_width=53), tile_shape(224, 224, 56, max_width=40)
        ((28, 28), (40, 40))
    """
    short = min(height, width)
    if short <= tile_size:
        factor = math.ceil(tile_size / short)
        if max_width is not None:
            factor = max(1, min(factor, max_width // width))
        return height * factor, width * factor
    scale = tile_size / short
    if max_width is not None:
        scale = min(scale, max_width / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(..., h, w)`` to ``size``: nearest when enlarging, area averaging when shrinking."""
    lead = maps.shape[:-2]
    x = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    mode = "area" if x.shape[-2] > size[0] or x.shape[-1] > size[1] else "nearest"
    return F.interpolate(x, size=size, mode=mode).reshape(*lead, *size)


def input_image(x: Tensor, norm: Norm | None = None) -> Tensor:
    """Probe inputs ``(N, C, H, W)`` as float ``[0, 1]`` ``(N, 1|3, H, W)`` for display.

    ``core.inputs.to_image01``: de-normalised when ``norm`` fits, else each image
    rescaled; inputs with other than 1 or 3 channels show their first three (or one).
    """
    return to_image01(x, norm)


def mean_heat(act: Tensor, size: tuple[int, int]) -> Tensor:
    """Mean ``|a|`` over channels, upsampled (bilinear) to ``size``, min-max per sample."""
    heat = (
        torch.nan_to_num(act.float(), nan=0.0, posinf=0.0, neginf=0.0).abs().mean(1, keepdim=True)
    )
    heat = F.interpolate(heat, size=size, mode="bilinear", align_corners=False)[:, 0]
    return rendering.normalize(heat, "per_image")


def _mark(tiles: Tensor, dead: Tensor) -> Tensor:
    """Dim and frame in red the tiles ``(K, 3, h, w)`` of dead channels ``(K,)``."""
    which = dead.nonzero().flatten().tolist()  # usually none: only those are redrawn
    if not which:
        return tiles
    out = tiles.clone()
    for k in which:
        out[k] = rendering.border(rendering.dim(tiles[k]), RED)
    return out


def _with_header(body: Tensor, labels: Sequence[str], tile_w: int, left: int = 0) -> Tensor:
    _, text_h = text_size("0")
    strip = torch.zeros(3, text_h + 2, body.shape[-1], dtype=torch.uint8, device=body.device)
    placed = [(label, left + 2 + col * (tile_w + 1), 1) for col, label in enumerate(labels)]
    strip = draw_texts(strip, placed, HEADER)
    return rendering.vstack([strip, body], gap=0)


def layer_grid(
    inputs01: Tensor,
    heat01: Tensor,
    maps01: Tensor,
    dead: Tensor,
    labels: Sequence[str],
    cmap: str = "viridis",
) -> Tensor:
    """One row per sample: input, mean-activation overlay, then the chosen channel maps.

    Args:
        inputs01: ``(S, 1|3, T, T')`` inputs in ``[0, 1]`` at tile size.
        heat01: ``(S, T, T')`` mean-activation heat in ``[0, 1]``.
        maps01: ``(S, K, T, T')`` channel maps in ``[0, 1]`` at tile size.
        dead: ``(K,)`` channels zero on the whole probe (dimmed, red frame).
        labels: ``K`` column labels (channel indices).
        cmap: colormap of the channel maps.
    """
    samples, k, _, tw = maps01.shape
    first = rendering.to_uint8(rendering.to_rgb(inputs01))
    heat = rendering.overlay(inputs01, heat01, "inferno", alpha=0.6)
    maps = _mark(rendering.apply_colormap(maps01.flatten(0, 1), cmap), dead.repeat(samples))
    tiles = torch.cat([first[:, None], heat[:, None], maps.unflatten(0, (samples, k))], dim=1)
    body = rendering.grid(tiles.flatten(0, 1), nrow=k + 2, pad_value=rendering.SEPARATOR)
    return _with_header(body, ["input", "mean", *labels], tw)


def stages_grid(
    rows: Sequence[tuple[str, Tensor, Tensor]], labels: Sequence[str], cmap: str = "viridis"
) -> Tensor:
    """One sample's chosen channels after each stage (conv, activation, pooling), a row each.

    ``rows`` holds ``(stage name, maps01 (K, T, T'), dead (K,))``; a name column on
    the left says which stage a row is.
    """
    k, _, tw = rows[0][1].shape
    name_w = max(text_size(name)[0] for name, _, _ in rows) + 4
    body_rows = []
    for name, maps, dead in rows:
        tiles = _mark(rendering.apply_colormap(maps, cmap), dead)
        line = rendering.grid(tiles, nrow=k, pad_value=rendering.SEPARATOR)
        line = line[:, 1:] if body_rows else line  # one separator line between rows
        tag = torch.zeros(3, line.shape[-2], name_w, dtype=torch.uint8, device=line.device)
        tag = draw_text(tag, name, 2, (line.shape[-2] - 11) // 2, HEADER)
        body_rows.append(rendering.hstack([tag, line], gap=0))
    return _with_header(rendering.vstack(body_rows, gap=0), labels, tw, left=name_w)
