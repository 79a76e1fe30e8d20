"""What a training step does to the images before the model, read against a probe pass.

The probes are read from the datasets and handed to ``forward``. A ``training_step`` that
normalises the batch itself (``x = (x - mean) / std``, ``x.float() / 255`` first for
bytes) before calling the model, or that calls the network inside it directly, hands the
model other inputs than the probe passes would: feature maps, activation statistics and
Grad-CAM then show the model on inputs it never trained on. ``step_follower.py`` reads
what a module received from two training batches and from probe passes of the same
images; here they are compared (``step_change``): alike, nothing; a per-channel scale and
shift (``channel_affine``) the same in both batches (``agreed``), to be followed in every
probe pass; a scale and shift drawn anew per batch (random brightness jitter) is
augmentation, left alone; the same values moved about, then scaled and shifted (a
random crop or flip, then a normalisation: ``moved_affine``), the scale and shift read from
the two sides' statistics; another change past ``input_shift``'s bars, or another image
size, is said, not copied (random augmentation in the step should not reach the probes).

Example::

    >>> import torch
    >>> x = torch.rand(4, 3, 8, 8)
    >>> scale, offset = channel_affine(x, (x - 0.5) / 0.25)
    >>> [round(v, 2) for v in scale.tolist()], [round(v, 2) for v in offset.tolist()]
    ([4.0, 4.0, 4.0], [-2.0, -2.0, -2.0])
    >>> channel_affine(x, x.flip(-1)) is None  # not a scale and shift of each value
    True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from lightning_cnnviz.core.input_shift import channel_stats, split_shift
from lightning_cnnviz.core.step_input_shift import FORMULA_MOVED, channel_values, values_fit

__all__ = [
    "Change",
    "affine_form",
    "agreed",
    "channel_affine",
    "moved_affine",
    "step_change",
    "step_text",
]

_FIT = 1e-3  # a scale and shift fits where what is left is this small against the spread
_SAME = 1e-5  # inputs this close are alike (float noise of a copy or a cast)
AGREE = 0.05  # two batches' scales and shifts this close (relative): the step's own, fixed


class Change(NamedTuple):
    """How a step changes the images before the module ``name`` ("" for the model itself).

    ``scale``, ``offset``: per channel, where the change is one (else ``None``);
    ``figures``: ``split_shift``'s where it is another change past its bars, or
    ``{"size": ...}`` where the step hands the module images of another size.
    """

    name: str
    scale: Tensor | None
    offset: Tensor | None
    figures: dict[str, Any]


def channel_affine(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor] | None:
    """Per-channel ``(scale, offset)`` with ``target = source * scale + offset``, or ``None``.

    ``source``, ``target``: ``(N, C, ...)`` of one shape. ``None`` where a least-squares fit
    leaves more of a channel's spread unexplained than ``_FIT`` or ``target``'s rounding
    (bfloat16 keeps 3 digits), or a channel of ``source`` is constant while ``target``'s is
    not, or a value is not finite.
    """
    if source.shape != target.shape or source.dim() < 2:
        return None
    s = source.detach().double().transpose(0, 1).reshape(source.shape[1], -1)
    t = target.detach().double().transpose(0, 1).reshape(target.shape[1], -1)
    s_mean, t_mean = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
    var = ((s - s_mean) ** 2).mean(1)
    scale = torch.where(var > 0, ((s - s_mean) * (t - t_mean)).mean(1) / var.clamp_min(1e-30), 1.0)
    offset = t_mean[:, 0] - scale * s_mean[:, 0]
    left = (t - (s * scale[:, None] + offset[:, None])).pow(2).mean(1).sqrt()
    spread = t.std(1) if t.shape[1] > 1 else t.abs().mean(1)
    rounding = 4 * torch.finfo(target.dtype).eps if target.is_floating_point() else 0.0
    bar = max(_FIT, rounding) * spread.clamp_min(1e-12)
    if not bool((left <= bar).all()):  # NaN fits nothing
        return None
    return scale.to(target.dtype), offset.to(target.dtype)


def moved_affine(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor] | None:
    """Per-channel ``(scale, offset)`` where ``target`` is ``source`` moved about, then scaled.

    Each channel's values, standardised and sorted, those of ``source`` within
    ``FORMULA_MOVED`` standard deviations (a crop, a flip, a rotation: the same values
    elsewhere): the scale and shift that take ``source``'s mean and spread to
    ``target``'s. ``None`` otherwise (noise added, a blur: other values). Held out (hunt
    113): a random crop and flip, then `(x - 0.1307) / 0.3081`, in `training_step` fit no
    scale and shift value by value, so the probes stayed raw and the training probe read
    chance on a model 68% right on its batches.

    Example::

        >>> import torch
        >>> x = torch.rand(4, 1, 8, 8)
        >>> scale, offset = moved_affine(x, (x.flip(-1) - 0.5) / 0.25)
        >>> round(float(scale), 3), round(float(offset), 3)
        (4.0, -2.0)
        >>> moved_affine(x, x + torch.randn_like(x)) is None
        True
    """
    if source.shape != target.shape or source.dim() < 2:
        return None
    moved = values_fit(channel_values(source), channel_values(target))[1]
    if not bool((moved <= FORMULA_MOVED).all()):  # NaN moves nothing here
        return None
    (s_mean, s_std), (t_mean, t_std) = (channel_stats(x.double()) for x in (source, target))
    if not bool((s_std > 0).all()):
        return None
    scale = t_std / s_std
    return scale.to(target.dtype), (t_mean - scale * s_mean).to(target.dtype)


def step_change(name: str, seen: Tensor, given: Tensor) -> Change | None:
    """How the step changed what module ``name`` received (``None``: alike, or unread).

    ``seen``: what it received in training; ``given``: in a probe pass of the same images.
    """
    given = given.detach().to(seen.dtype)
    if not (seen.isfinite().all() and given.isfinite().all()):
        return None  # NaN pixels say nothing of a scale: the monitors say they are there
    if given.shape[2:] != seen.shape[2:]:
        sizes = {"size": tuple(seen.shape[2:]), "given": tuple(given.shape[2:])}
        return Change(name, None, None, sizes)
    if given.shape != seen.shape:
        return None
    if torch.allclose(given, seen, rtol=_SAME, atol=_SAME * float(seen.abs().max()) + 1e-12):
        return None
    fit, figures = channel_affine(given, seen), split_shift(seen, given)
    if fit is not None:
        return Change(name, *fit, figures)
    if figures and (fit := moved_affine(given, seen)) is not None:
        return Change(name, *fit, {**figures, "moved": 1.0})
    if figures:
        return Change(name, None, None, figures)
    return None  # random augmentation in the step: the probes stay as the data gives them


def agreed(first: Change | None, second: Change | None) -> Change | None:
    """The change two training batches show alike (``None``: none, or a jitter).

    A scale and shift is the step's own where both batches give it within ``AGREE``
    (the averages followed). Otherwise, where both batches change the images past
    ``input_shift``'s bars (a jitter drawn per batch, then a normalisation), it is said,
    not followed; a jitter alone within the bars is augmentation, left alone.
    """
    if first is None or second is None or first.name != second.name:
        return None
    said = Change(first.name, None, None, first.figures) if first.figures else None
    if first.scale is None or first.offset is None or second.scale is None or second.offset is None:
        return said if second.figures else None
    scale, offset = (first.scale + second.scale) / 2, (first.offset + second.offset) / 2
    room = AGREE * (scale.abs() + offset.abs())  # in units of the images' own range
    apart = (first.scale - second.scale).abs() + (first.offset - second.offset).abs()
    if bool((apart <= room).all()):
        return Change(first.name, scale, offset, first.figures)
    return said if second.figures else None


def step_text(found: Change) -> str:
    """What the training step does to the images outside ``forward``, in words.

    ``figures["val"]``: the scale and shift followed is the validation step's (training's
    own change is none).
    """
    where = f"`{found.name}`" if found.name else "`forward`"
    if found.scale is not None and found.offset is not None:
        scale, offset = found.scale.tolist(), found.offset.tolist()
        mean = [-b / a if a else 0.0 for a, b in zip(scale, offset, strict=True)]
        std = [1 / a if a else float("inf") for a in scale]
        form = f"`{affine_form(mean, std)}`"
        if found.figures.get("val"):
            return (
                f"the training step changes the images before {where} in a way no scale "
                "and shift repeats (random augmentation with it), and the validation step "
                f"hands {where} its images as {form}, outside what the probe passes run "
                "(they read the images from the datasets): the probe passes do as "
                "validation does (move the normalisation into the dataset's transform or "
                "`forward` to keep it in one place)"
            )
        if found.figures.get("moved"):
            form += " after moving its pixels about (a crop, a flip: left out of them)"
        return (
            f"the training step hands {where} its images as {form}, outside what the probe "
            "passes run (they read the images from the datasets): the probe passes do the "
            "same there (move it into the dataset's transform or `forward` to keep it in one "
            "place)"
        )
    f = found.figures
    if "size" in f:
        return (
            f"the training step hands {where} its images at another size, {f['size']}, "
            f"than the datasets hold them, {f['given']}, outside what the probe passes run "
            "(a resize or crop in the step): the monitors show the model on the datasets' "
            "images (move that step into the dataset's transform or `forward`)"
        )
    return (
        f"the training step changes the images before {where} outside what the probe "
        f"passes run (they read the images from the datasets), and not as a scale and "
        f"shift it can follow: channel {int(f['channel'])} reaches it with mean "
        f"{f['train_mean']:.3g} and spread {f['train_std']:.3g} in training, "
        f"{f['val_mean']:.3g} and {f['val_std']:.3g} in a probe pass, so the monitors show "
        "the model on other inputs than training's (move that step into the dataset's "
        "transform or `forward`)"
    )


def affine_form(mean: list[float], std: list[float]) -> str:
    """``(x - mean) / std`` in words a user wrote, per channel where they differ.

    A shift within float round-off of the spread is none (uint8 images divided by 255
    read a mean of -8e-07, written ``(x - -8.39e-07) / 255``); a spread of 1 is none.

    Example::

        >>> affine_form([-8.4e-07], [255.0]), affine_form([-0.5], [1.0])
        ('x / 255', 'x + 0.5')
        >>> affine_form([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        '(x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)'
        >>> affine_form([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        '(x - 0.5) / 0.5'
        >>> affine_form([127.5], [127.5])  # `(x - 0.5) / 0.5` on uint8 images read as 0-255
        '(x - 127.5) / 127.5'
    """
    mean = [0.0 if abs(m) <= _FIT * abs(s) else m for m, s in zip(mean, std, strict=True)]
    spread = any(abs(s - 1.0) > _FIT for s in std)
    x = "x"
    if any(mean):
        down = all(m < 0 for m in mean) and len(set(mean)) == 1  # one shift up: x + 0.5
        sign, shift = ("+", _values([-m for m in mean])) if down else ("-", _values(mean))
        x = f"(x {sign} {shift})" if spread else f"x {sign} {shift}"
    return f"{x} / {_values(std)}" if spread else x


def _values(values: list[float]) -> str:
    """One figure (for every channel alike), or a tuple of them per channel (the first 4)."""
    shown = [f"{v:.4g}" for v in values[:4]]  # 127.5 (uint8 at 0.5), not 127
    if len(set(shown)) == 1 and len(values) <= 4:
        return shown[0]
    return "(" + ", ".join(shown) + (", ...)" if len(values) > 4 else ")")
