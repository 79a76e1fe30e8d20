"""Whether training and validation images reach the model alike: per-channel mean and spread.

Nothing here knows about Lightning. ``split_shift`` compares two splits' images as their
datasets give them; ``step_shift`` compares what the steps' own code does to the images
before the model's first layer (``StepInput``: one batch of each split, as loaded and as
that layer received it). Both read each channel's mean and standard deviation over
images and positions, and use the same bars: means ``SHIFT_MEAN`` pooled standard
deviations apart, or spreads ``SHIFT_SCALE`` times apart.

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

import math
from typing import NamedTuple

import torch
from torch import Tensor

from lightning_cnnviz.core.real_values import real_values

__all__ = [
    "MILD_MEAN",
    "MILD_SCALE",
    "SHIFT_MEAN",
    "SHIFT_SCALE",
    "StepInput",
    "channel_order",
    "channel_stats",
    "draw_noise",
    "loaded_shift",
    "moved_shift",
    "restandardise",
    "split_shift",
    "step_input",
    "step_shift",
]

SHIFT_MEAN = 1.0  # channel means this many pooled standard deviations apart: inputs differ
SHIFT_SCALE = 2.0  # or channel standard deviations this many times apart
# Milder bars, read only beside other evidence that the splits differ (BatchNorm's running
# statistics fitting training images and not val ones): noise of sd 0.5 added to
# normalised val digits alone spreads them 1.12x; random crops and flips move a channel's
# mean and spread by a few percent
MILD_MEAN, MILD_SCALE = 0.25, 1.1
# ... and, so near, past this many standard errors of the probes' own draw (over images):
# 64-image probes of sparse shapes of random colour from one generator part by 1.1x in
# spread in a quarter of draws (hunt 94: a standing "preprocessed otherwise" on a healthy
# run, its 128-image probes 1.14x apart, 3.1 errors); several channels and two figures
# each are read, and images' spreads have heavy tails, hence well past 3
MILD_Z = 4.0
_FLAT = 1e-6  # a channel whose images spread less than this is constant: nothing to compare
# a channel spreading less than this share of its split's widest channel's spread on both splits
# is near empty (a border row read as a channel, an alpha plane): its spreads are not compared
_FAINT = 0.05
# a layer channel's mean and spread within this share of a loaded channel's: the same values
# (a step that reorders channels moves them unchanged; float sums differ far less than this)
_SAME = 1e-4


class StepInput(NamedTuple):
    """One batch's per-channel ``(C,)`` mean and std, as loaded and at the model's first layer.

    Kept on the batch's device until compared (no host synchronisation in a step).
    """

    images_mean: Tensor
    images_std: Tensor
    layer_mean: Tensor
    layer_std: Tensor


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of ``(N, C, ...)`` over images and positions.

    Of the magnitudes of complex values (MRI, radar): a cast would keep the real part.
    """
    x = x.detach()
    flat = real_values(x).transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(1), flat.std(1)


def restandardise(x: Tensor, source: Tensor, target: Tensor) -> Tensor:
    """``x`` with each channel's mean and spread moved from ``source``'s to ``target``'s.

    ``source`` and ``target``: images ``(N, C, ...)`` whose per-channel statistics are
    read (the val probe's and the train probe's).

    Example::

        >>> import torch
        >>> val = torch.tensor([[[[0.0, 2.0]]]])  # mean 1, spread 1.41
        >>> train = torch.tensor([[[[0.0, 1.0]]]])  # mean 0.5, spread 0.71
        >>> restandardise(val, val, train).tolist()
        [[[[0.0, 1.0]]]]
    """
    (s_mean, s_std), (t_mean, t_std) = channel_stats(source), channel_stats(target)
    shape = (1, -1, *([1] * (x.dim() - 2)))
    scale = (t_std / s_std.clamp_min(_FLAT)).to(x).view(shape)
    return (x - s_mean.to(x).view(shape)) * scale + t_mean.to(x).view(shape)


def step_input(images: Tensor, layer_input: Tensor) -> StepInput:
    """A ``StepInput`` from a batch's images and what the first layer received of them."""
    return StepInput(*channel_stats(images), *channel_stats(layer_input))


def _channel_shift(
    t_mean: float,
    t_std: float,
    v_mean: float,
    v_std: float,
    bars: tuple[float, float],
    floors: tuple[float, float] = (_FLAT, _FLAT),
) -> tuple[float, dict]:
    """How far one channel's training and validation statistics part (badness >= 1: too far).

    ``floors``: the least spread a channel of each side is read at (``_floors``).
    """
    pooled = max(((t_std**2 + v_std**2) / 2) ** 0.5, *floors)
    gap = abs(t_mean - v_mean) / pooled
    t_read, v_read = max(t_std, floors[0]), max(v_std, floors[1])
    ratio = max(t_read, v_read) / min(t_read, v_read)
    figures = {"train_mean": t_mean, "train_std": t_std, "val_mean": v_mean, "val_std": v_std,
               "mean_gap": gap, "scale_ratio": ratio}  # fmt: skip
    return max(gap / bars[0], (ratio - 1) / (bars[1] - 1)), figures


def _floors(*stds: list[float]) -> tuple[float, ...]:
    """The least spread each side's channels are read at: ``_FAINT`` of its widest channel's.

    Per side: a floor drawn from both would read a side scaled up 255x at 1/``_FAINT``
    (hunt 89: "20.0x in spread" told for inputs multiplied by 255 mid-run).

    Example::

        >>> [round(f, 3) for f in _floors([1.2, 0.01], [310.0, 2.0])]
        [0.06, 15.5]
    """
    return tuple(max(_FLAT, _FAINT * max(side, default=0.0)) for side in stds)


def _worst(channels: list[tuple[float, dict]]) -> dict[str, float]:
    """The figures of the channel that parts most, with ``channel``; ``{}`` when none is too far."""
    worst, figures = 0.0, {}
    for c, (badness, found) in enumerate(channels):
        if badness >= 1.0 and badness > worst:
            worst, figures = badness, {"channel": float(c), **found}
    return figures


def draw_noise(x: Tensor) -> tuple[list[float], list[float]]:
    """Per channel, the standard errors over the images of ``x`` of its mean and of its log spread.

    What drawing other images of the same set would move them by: from each image's mean,
    and its share of the variance about the channel's mean (the delta method for the log).

    Example::

        >>> import torch
        >>> mean_se, log_std_se = draw_noise(torch.randn(400, 1, 8, 8))
        >>> round(mean_se[0], 3), round(log_std_se[0], 3)
        (0.006, 0.004)
    """
    n = len(x)
    flat = real_values(x.detach(), torch.float64).transpose(0, 1).reshape(x.shape[1], n, -1)
    if n < 2 or flat.shape[2] == 0:
        return [math.inf] * x.shape[1], [math.inf] * x.shape[1]
    share = ((flat - flat.mean((1, 2), keepdim=True)) ** 2).mean(2)  # (C, n)
    mean_se = flat.mean(2).std(1) / math.sqrt(n)
    log_std_se = share.std(1) / math.sqrt(n) / share.mean(1).clamp_min(_FLAT**2) / 2
    return mean_se.tolist(), log_std_se.tolist()


def _beyond_draw(figures: dict, noise: tuple[float, float, float, float]) -> float:
    """The badness of a channel's mild shift counting only what its probes' draw cannot give."""
    t_mean_se, t_log_se, v_mean_se, v_log_se = noise
    gap = abs(figures["train_mean"] - figures["val_mean"])
    mean_real = gap > MILD_Z * math.hypot(t_mean_se, v_mean_se)
    scale_real = math.log(figures["scale_ratio"]) > MILD_Z * math.hypot(t_log_se, v_log_se)
    return max(
        figures["mean_gap"] / MILD_MEAN if mean_real else 0.0,
        (figures["scale_ratio"] - 1) / (MILD_SCALE - 1) if scale_real else 0.0,
    )


def split_shift(train: Tensor, val: Tensor, mild: bool = False) -> dict[str, float]:
    """The channel whose statistics differ most between two splits' images (``{}``: none).

    Beyond ``SHIFT_MEAN`` (mean gap in pooled standard deviations) or ``SHIFT_SCALE``
    (ratio of standard deviations); ``mild``: beyond ``MILD_MEAN`` or ``MILD_SCALE``, and
    ``MILD_Z`` standard errors of the probes' draw (``draw_noise``).

    Images ``(N, C, ...)``; per channel, the mean and standard deviation over images and
    positions. Random augmentation moves a channel's mean by a fraction of its standard
    deviation; a split normalised differently (or not at all), or in another channel
    order, moves it by more: digits normalised for training (mean 0, std 1) and left raw
    for validation (mean 0.13, std 0.31) differ 3.2x in scale.

    Example::

        >>> import torch
        >>> torch.manual_seed(0) is not None
        True
        >>> train = torch.randn(64, 1, 8, 8)
        >>> split_shift(train, torch.randn(64, 1, 8, 8))
        {}
        >>> raw = split_shift(train, 0.3 * torch.rand(64, 1, 8, 8))
        >>> raw["channel"], raw["scale_ratio"] > SHIFT_SCALE
        (0.0, True)
    """
    if train.dim() < 2 or val.dim() < 2 or train.shape[1] != val.shape[1]:
        return {}
    (t_mean, t_std), (v_mean, v_std) = channel_stats(train), channel_stats(val)
    rows = list(zip(t_mean.tolist(), t_std.tolist(), v_mean.tolist(), v_std.tolist(), strict=True))
    bars = (MILD_MEAN, MILD_SCALE) if mild else (SHIFT_MEAN, SHIFT_SCALE)
    floors = _floors([r[1] for r in rows], [r[3] for r in rows])
    channels = [_channel_shift(*row, bars, floors) for row in rows]
    if mild:  # so near, only what drawing other images could not give
        noise = zip(*draw_noise(train), *draw_noise(val), strict=True)
        channels = [(_beyond_draw(f, n), f) for (_, f), n in zip(channels, noise, strict=True)]
    return _worst(channels)


def moved_shift(first: tuple[Tensor, Tensor], now: tuple[Tensor, Tensor]) -> dict[str, float]:
    """The channel whose statistics moved most between two reads of one split (``{}``: none).

    ``first``, ``now``: per-channel ``(mean, std)`` (``channel_stats``) of a split's batch
    at its first validation and now, by ``split_shift``'s bars; figures ``first_mean``,
    ``first_std``, ``now_mean``, ``now_std``, ``mean_gap``, ``scale_ratio``.

    Example::

        >>> import torch
        >>> normalised = (torch.zeros(1), torch.ones(1))
        >>> raw = moved_shift(normalised, (torch.full((1,), 0.13), torch.full((1,), 0.31)))
        >>> round(raw["scale_ratio"], 2), raw["now_std"] < raw["first_std"]
        (3.23, True)
        >>> moved_shift(normalised, (torch.full((1,), 0.05), torch.full((1,), 0.97)))
        {}
    """
    if first[0].shape != now[0].shape:
        return {}
    rows = list(zip(*(t.float().tolist() for t in (*first, *now)), strict=True))
    floors = _floors([r[1] for r in rows], [r[3] for r in rows])
    found = _worst([_channel_shift(*row, (SHIFT_MEAN, SHIFT_SCALE), floors) for row in rows])
    names = {"train_mean": "first_mean", "train_std": "first_std", "val_mean": "now_mean",
             "val_std": "now_std"}  # fmt: skip
    return {names.get(k, k): v for k, v in found.items()}


def loaded_shift(train: StepInput, val: StepInput) -> dict[str, float]:
    """The channel whose statistics differ most between two splits' batches as loaded.

    What the loaders made of the images (their ``collate_fn`` included), by
    ``split_shift``'s bars: read where a loader's collate draws at random, so the
    probes, which read the datasets' items, do not show what it does (``{}``: alike).

    Example::

        >>> import torch
        >>> torch.manual_seed(0) is not None
        True
        >>> x = torch.rand(32, 1, 8, 8)
        >>> normalised = (x - 0.5) / 0.29 + 0.1 * torch.randn_like(x)  # and noise
        >>> loaded_shift(step_input(normalised, normalised), step_input(x, x))["scale_ratio"] > 2
        True
    """
    if train.images_mean.shape != val.images_mean.shape:
        return {}
    rows = list(
        zip(*(t.float().tolist() for t in (train[0], train[1], val[0], val[1])), strict=True)
    )
    floors = _floors([r[1] for r in rows], [r[3] for r in rows])
    return _worst([_channel_shift(*row, (SHIFT_MEAN, SHIFT_SCALE), floors) for row in rows])


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
    i_mean, i_std, l_mean, l_std = (t.float().tolist() for t in s)
    order = []
    for m, sd in zip(l_mean, l_std, strict=True):
        bar = _SAME * max(sd, _FLAT)
        same = [j for j, (im, isd) in enumerate(zip(i_mean, i_std, strict=True))
                if abs(im - m) <= bar and abs(isd - sd) <= bar]  # fmt: skip
        if len(same) != 1:
            return None
        order.append(same[0])
    return tuple(order) if len(set(order)) == len(order) else None


def step_shift(train: StepInput, val: StepInput) -> dict[str, float]:
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
    """
    if len({t.numel() for t in (*train, *val)}) != 1:
        return {}
    channels = []
    for row in zip(*(t.float().tolist() for t in (*train, *val)), strict=True):
        (tb_mean, tb_std, tl_mean, tl_std, vb_mean, vb_std, vl_mean, vl_std) = row
        if min(tb_std, vb_std) < _FLAT:  # a constant channel: no scale to read
            channels.append((0.0, {}))
            continue
        t_scale, v_scale = tl_std / tb_std, vl_std / vb_std
        t_offset, v_offset = tl_mean - t_scale * tb_mean, vl_mean - v_scale * vb_mean
        badness, figures = _channel_shift(tl_mean, tl_std, v_scale * tb_mean + v_offset,
                                          v_scale * tb_std, (SHIFT_MEAN, SHIFT_SCALE))  # fmt: skip
        figures |= {"train_scale": t_scale, "val_scale": v_scale, "train_offset": t_offset,
                    "val_offset": v_offset}  # fmt: skip
        channels.append((badness, figures))
    found = _worst(channels)
    orders = channel_order(train), channel_order(val)
    if found and None not in orders and orders[0] != orders[1]:
        found |= {"train_order": list(orders[0]), "val_order": list(orders[1])}  # type: ignore[arg-type]
    return found
