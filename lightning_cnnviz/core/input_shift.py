"""Whether training and validation images reach the model alike: per-channel mean and spread.

Nothing here knows about Lightning. ``split_shift`` compares two splits' images as their
datasets give them, ``moved_shift`` two reads of one split; ``core.step_input_shift``
compares what the steps' own code does to the images, by the same bars. Each channel's
mean and standard deviation over images and positions is read (``channel_stats``): means
``SHIFT_MEAN`` pooled standard deviations apart, or spreads ``SHIFT_SCALE`` times apart.

Example::

    >>> import torch
    >>> torch.manual_seed(0) is not None
    True
    >>> x = torch.rand(64, 1, 8, 8)
    >>> round(split_shift((x - 0.5) / 0.29, x)["scale_ratio"], 1)  # val left raw
    3.4
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_cnnviz.core.real_values import real_values

__all__ = [
    "FLAT",
    "MILD_MEAN",
    "MILD_SCALE",
    "SHIFT_MEAN",
    "SHIFT_SCALE",
    "channel_shift",
    "channel_stats",
    "draw_noise",
    "faint_floors",
    "moved_shift",
    "restandardise",
    "split_shift",
    "worst_channel",
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
FLAT = 1e-6  # a channel whose images spread less than this is constant: nothing to compare
# a channel spreading less than this share of its split's widest channel's spread on both splits
# is near empty (a border row read as a channel, an alpha plane): its spreads are not compared
_FAINT = 0.05


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
    scale = (t_std / s_std.clamp_min(FLAT)).to(x).view(shape)
    return (x - s_mean.to(x).view(shape)) * scale + t_mean.to(x).view(shape)


def channel_shift(
    t_mean: float,
    t_std: float,
    v_mean: float,
    v_std: float,
    bars: tuple[float, float],
    floors: tuple[float, float] = (FLAT, FLAT),
) -> tuple[float, dict]:
    """How far one channel's training and validation statistics part (badness >= 1: too far).

    ``floors``: the least spread a channel of each side is read at (``faint_floors``).
    """
    pooled = max(((t_std**2 + v_std**2) / 2) ** 0.5, *floors)
    gap = abs(t_mean - v_mean) / pooled
    t_read, v_read = max(t_std, floors[0]), max(v_std, floors[1])
    ratio = max(t_read, v_read) / min(t_read, v_read)
    figures = {"train_mean": t_mean, "train_std": t_std, "val_mean": v_mean, "val_std": v_std,
               "mean_gap": gap, "scale_ratio": ratio}  # fmt: skip
    return max(gap / bars[0], (ratio - 1) / (bars[1] - 1)), figures


def faint_floors(*stds: list[float]) -> tuple[float, ...]:
    """The least spread each side's channels are read at: ``_FAINT`` of its widest channel's.

    Per side: a floor drawn from both would read a side scaled up 255x at 1/``_FAINT``
    (hunt 89: "20.0x in spread" told for inputs multiplied by 255 mid-run).

    Example::

        >>> [round(f, 3) for f in faint_floors([1.2, 0.01], [310.0, 2.0])]
        [0.06, 15.5]
    """
    return tuple(max(FLAT, _FAINT * max(side, default=0.0)) for side in stds)


def worst_channel(channels: list[tuple[float, dict]]) -> dict[str, float]:
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
    log_std_se = share.std(1) / math.sqrt(n) / share.mean(1).clamp_min(FLAT**2) / 2
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
    floors = faint_floors([r[1] for r in rows], [r[3] for r in rows])
    channels = [channel_shift(*row, bars, floors) for row in rows]
    if mild:  # so near, only what drawing other images could not give
        noise = zip(*draw_noise(train), *draw_noise(val), strict=True)
        channels = [(_beyond_draw(f, n), f) for (_, f), n in zip(channels, noise, strict=True)]
    return worst_channel(channels)


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
    floors = faint_floors([r[1] for r in rows], [r[3] for r in rows])
    found = worst_channel([channel_shift(*row, (SHIFT_MEAN, SHIFT_SCALE), floors) for row in rows])
    names = {"train_mean": "first_mean", "train_std": "first_std", "val_mean": "now_mean",
             "val_std": "now_std"}  # fmt: skip
    return {names.get(k, k): v for k, v in found.items()}
