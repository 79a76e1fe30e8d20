"""Whether the steps' own code hands the first layer training and val images alike.

``StepInput``: one batch of each split, per channel, as loaded and as the model's first
layer received it. ``step_shift`` reads each step as a per-channel scale and shift and
compares them; ``channel_order`` reads a step that reorders the channels. The bars are
``core.input_shift``'s (``split_batches.py`` compares the two batches as they are).

Example::

    >>> import torch
    >>> torch.manual_seed(0) is not None
    True
    >>> x = torch.rand(32, 1, 8, 8)
    >>> train = step_input(x, (x - 0.13) / 0.31)  # `training_step` normalises
    >>> val = step_input(x, x)  # `validation_step` does not
    >>> round(step_shift(train, val)["scale_ratio"], 1)
    3.2
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lightning_cnnviz.core.input_shift import (
    FLAT,
    SHIFT_MEAN,
    SHIFT_SCALE,
    channel_shift,
    channel_stats,
    worst_channel,
)
from lightning_cnnviz.core.real_values import real_values

__all__ = [
    "FIT_VALUES",
    "FORMULA_BARS",
    "FORMULA_FIT",
    "FORMULA_MOVED",
    "StepInput",
    "channel_fit",
    "channel_order",
    "channel_values",
    "is_formula",
    "same_formula",
    "step_input",
    "step_shift",
    "values_fit",
]

# a layer channel's mean and spread within this share of a loaded channel's: the same values
# (a step that reorders channels moves them unchanged; float sums differ far less than this)
_SAME = 1e-4


class StepInput(NamedTuple):
    """One batch's per-channel ``(C,)`` mean and std, as loaded and at the model's first layer.

    ``fit``: per channel, the correlation of what the layer received with the images as
    loaded, value by value (1: a scale and shift of them; ``None``: not read, or shapes
    that differ). Kept on the batch's device until compared (no host synchronisation in a
    step).
    """

    images_mean: Tensor
    images_std: Tensor
    layer_mean: Tensor
    layer_std: Tensor
    fit: Tensor | None = None
    moved: Tensor | None = None

    @property
    def stats(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four per-channel means and spreads, as loaded and at the first layer."""
        return self.images_mean, self.images_std, self.layer_mean, self.layer_std


FORMULA_FIT = 0.999
"""A step's output correlating this well with its input, value by value: a scale and shift
of it exactly (float round-off aside)."""
FORMULA_MOVED = 0.02
"""... or its values, standardised and sorted, its input's within this (standard
deviations): the same values moved about (a crop, a flip), then scaled and shifted. On
digits a random crop reads 0.006, noise of a sixth of their spread 0.12."""


def is_formula(fit: float | None, moved: float | None) -> bool:
    """Whether a step's channel is a scale and shift of the images (by ``FORMULA_FIT``, ``_MOVED``).

    Example::

        >>> is_formula(0.9999, None), is_formula(0.4, 0.006), is_formula(0.97, 0.12)
        (True, True, False)
    """
    return (fit is not None and fit >= FORMULA_FIT) or (
        moved is not None and moved <= FORMULA_MOVED
    )


FORMULA_BARS = (0.25, 1.25)
"""``step_shift``'s bars (standard deviations apart, times in spread) where both steps are
formulas (``is_formula``) and training's is the same on two of its batches
(``same_formula``): two constants the code writes, not a change drawn per batch. Held out
(hunt 113): `(x - 0.1307) / 0.3081` in `training_step`, `(x - 0.5) / 0.5` in
`validation_step` put the same digits 0.89 standard deviations apart, 1.6x in spread, under
``input_shift``'s bars: val accuracy 74% against 93%, nothing said."""
SAME_FORMULA = 0.02  # two batches' scales (relative) and shifts (in spreads) this close


def same_formula(a: StepInput, b: StepInput) -> bool:
    """Whether two batches of one step were given one scale and shift per channel.

    Each step read as ``step_shift`` reads it (the layer's statistics against the batch's
    own), within ``SAME_FORMULA``; a channel of one value in either batch is passed over.

    Example::

        >>> import torch
        >>> x, y = torch.rand(16, 2, 8, 8), torch.rand(16, 2, 8, 8)
        >>> same_formula(step_input(x, (x - 0.13) / 0.31), step_input(y, (y - 0.13) / 0.31))
        True
        >>> same_formula(step_input(x, x), step_input(y, 1.4 * y))  # a jitter per batch
        False
    """
    if a.images_mean.shape != b.images_mean.shape:
        return False
    rows = zip(*(t.float().tolist() for t in (*a.stats, *b.stats)), strict=True)
    for a_mean, a_std, al_mean, al_std, b_mean, b_std, bl_mean, bl_std in rows:
        if min(a_std, b_std) < FLAT:
            continue
        a_scale, b_scale = al_std / a_std, bl_std / b_std
        if abs(b_scale - a_scale) > SAME_FORMULA * a_scale:
            return False
        # b's scale and shift applied to a's images, against what a's step made of them
        if abs(b_scale * a_mean + bl_mean - b_scale * b_mean - al_mean) > SAME_FORMULA * al_std:
            return False
    return True


FIT_VALUES = 1 << 16
"""Values per channel ``channel_fit`` reads at most (a 512-pixel batch of 32 holds 8.4M, whose
sort took 20 s in a training step); their sampling noise, ~0.005 standard deviations, is
far under ``FORMULA_MOVED``."""


def channel_fit(images: Tensor, layer_input: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Per channel, how far ``layer_input`` is a scale and shift of ``images``.

    ``(correlation, moved)``: the correlation of the two value by value, and how far apart
    their values lie once each is standardised, taken in sorted order (the mean absolute
    difference, in standard deviations). A scale and shift: correlation 1, moved 0; the
    same values moved about (a flip, a crop): moved 0 at a lower correlation; noise added:
    both off. ``(None, None)`` where the shapes differ.

    Example::

        >>> import torch
        >>> x = torch.rand(8, 2, 4, 4)
        >>> fit, moved = channel_fit(x, 3 * x.flip(-1) - 1)  # normalised and flipped
        >>> bool(fit.max() < 0.95), [round(v, 3) for v in moved.tolist()]
        (True, [0.0, 0.0])
        >>> fit, moved = channel_fit(x, x + 3 * torch.randn_like(x))  # noise added
        >>> bool(fit.max() < 0.5), bool(moved.min() > 0.1)
        (True, True)
    """
    if images.shape != layer_input.shape or images.dim() < 2:
        return None, None
    return values_fit(channel_values(images), channel_values(layer_input))


def values_fit(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``channel_fit`` of two ``channel_values`` read at the same positions."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    sa, sb = (t.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12) for t in (a, b))
    correlation = (a * b).mean(1, keepdim=True) / (sa * sb)
    b = (b / sb).sort(1).values
    # either sign of scale (a negative one reverses the order the sorted values come in)
    moved = torch.minimum(*(((sign * a / sa).sort(1).values - b).abs().mean(1) for sign in (1, -1)))
    return correlation[:, 0].float(), moved.float()


def channel_values(x: Tensor) -> Tensor:
    """``(C, values)`` of ``(N, C, ...)`` in float64: all, or ``FIT_VALUES`` drawn alike.

    The same positions for any tensor of one shape (a generator of its own, seeded: the
    run's random state untouched), gathered without copying the whole batch: a step's
    input read before it runs pairs with what its first layer receives.
    """
    flat = x.detach().reshape(x.shape[0], x.shape[1], -1)
    n, c, p = flat.shape
    if n * p <= FIT_VALUES:
        return real_values(flat.transpose(0, 1).reshape(c, -1), torch.float64)
    drawn = torch.randint(n * p, (FIT_VALUES,), generator=torch.Generator().manual_seed(0))
    drawn = drawn.to(x.device)
    return real_values(flat[drawn // p, :, drawn % p].T, torch.float64)


def step_input(images: Tensor, layer_input: Tensor) -> StepInput:
    """A ``StepInput`` from a batch's images and what the first layer received of them."""
    fit = channel_fit(images, layer_input)
    return StepInput(*channel_stats(images), *channel_stats(layer_input), *fit)


def _fits(values: Tensor | None, channels: int) -> list[float | None]:
    """A ``StepInput``'s ``fit`` or ``moved`` per channel on the host (``None`` each: unread)."""
    return [None] * channels if values is None else values.float().tolist()


def channel_order(s: StepInput) -> tuple[int, ...] | None:
    """Which loaded channel each channel the first layer received is, where a step reorders them.

    Each layer channel whose mean and spread are those of exactly one loaded channel
    (within ``_SAME``), all of them a permutation: that permutation, the identity where a
    step leaves the order; ``None`` where a step rescales the channels, or two channels are
    alike (the order cannot be read).

    Example::

        >>> import torch
        >>> x = torch.rand(8, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
        >>> channel_order(step_input(x, x[:, [2, 1, 0]])), channel_order(step_input(x, x))
        ((2, 1, 0), (0, 1, 2))
        >>> channel_order(step_input(x, x * 2)) is None
        True
    """
    if s.images_mean.shape != s.layer_mean.shape or s.images_mean.numel() < 2:
        return None
    i_mean, i_std, l_mean, l_std = (t.float().tolist() for t in s.stats)
    order = []
    for m, sd in zip(l_mean, l_std, strict=True):
        bar = _SAME * max(sd, FLAT)
        same = [j for j, (im, isd) in enumerate(zip(i_mean, i_std, strict=True))
                if abs(im - m) <= bar and abs(isd - sd) <= bar]  # fmt: skip
        if len(same) != 1:
            return None
        order.append(same[0])
    return tuple(order) if len(set(order)) == len(order) else None


def step_shift(train: StepInput, val: StepInput, steady: bool = False) -> dict[str, float]:
    """Whether the steps' code hands the first layer training and val images differently.

    Each split's step is read as a per-channel scale and shift (the layer's statistics
    against the batch's own): ``validation_step``'s applied to the training batch's images
    gives what the model would meet in validation for those very images, compared with
    what it met in training by ``split_shift``'s bars. Comparing the same images, the
    classes in either batch do not matter. ``{}``: alike; the figures add the two steps'
    scales (``train_scale``, ``val_scale``) and shifts (``train_offset``, ``val_offset``),
    and where the steps put the channels in two orders (``channel_order``), both orders
    (``train_order``, ``val_order``): a reordering read as a scale is no rescale (hunt 93:
    RGB to BGR in `training_step` told as "`(x - 0.038) / 2.325` of channel 0").
    ``steady``: training's step gave two of its batches the same scale and shift
    (``same_formula``); where both steps are formulas, ``FORMULA_BARS`` apply.
    """
    stats = (*train.stats, *val.stats)  # (``fit`` and ``moved`` are read below)
    if len({t.numel() for t in stats}) != 1:
        return {}
    # a step that is no scale and shift of the images (noise added) has no formula
    k = train.images_mean.numel()
    steps = (("train", train), ("val", val))
    reads = {f"{split}_{name}": _fits(getattr(s, name), k)
             for split, s in steps for name in ("fit", "moved")}  # fmt: skip
    channels = []
    for c, row in enumerate(zip(*(t.float().tolist() for t in stats), strict=True)):
        (tb_mean, tb_std, tl_mean, tl_std, vb_mean, vb_std, vl_mean, vl_std) = row
        if min(tb_std, vb_std) < FLAT:  # a constant channel: no scale to read
            channels.append((0.0, {}))
            continue
        t_scale, v_scale = tl_std / tb_std, vl_std / vb_std
        t_offset, v_offset = tl_mean - t_scale * tb_mean, vl_mean - v_scale * vb_mean
        written = steady and all(is_formula(reads[f"{s}_fit"][c], reads[f"{s}_moved"][c])
                                 for s in ("train", "val"))  # fmt: skip
        bars = FORMULA_BARS if written else (SHIFT_MEAN, SHIFT_SCALE)
        badness, figures = channel_shift(tl_mean, tl_std, v_scale * tb_mean + v_offset,
                                          v_scale * tb_std, bars)  # fmt: skip
        figures |= {"train_scale": t_scale, "val_scale": v_scale, "train_offset": t_offset,
                    "val_offset": v_offset}  # fmt: skip
        figures |= {key: v[c] for key, v in reads.items() if v[c] is not None}
        channels.append((badness, figures))
    found = worst_channel(channels)
    orders = channel_order(train), channel_order(val)
    if found and None not in orders and orders[0] != orders[1]:
        found |= {"train_order": list(orders[0]), "val_order": list(orders[1])}  # type: ignore[arg-type]
    return found
