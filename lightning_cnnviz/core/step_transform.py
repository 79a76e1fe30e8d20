"""What a training step does to the images before the model, for the probe passes to do alike.

The probes are read from the datasets and handed to ``forward``. A ``training_step`` that
normalises the batch itself (``x = (x - mean) / std``) before calling the model, or that
calls the network inside it directly, hands the model other inputs than the probe passes
would: feature maps, activation statistics and Grad-CAM then show the model on inputs it
never trained on. ``StepTap`` follows the run's first training batch to the first module
called with a tensor shaped as the batch's images (the model itself, or the network the
step calls); ``step_transform`` compares what that module received with what it receives
in a probe pass of the same images. Alike: nothing to do. A per-channel scale and shift
(``channel_affine``): the probe passes apply it there (``probe_pass.follow_step``). Anything
else is followed only where it moves a channel's statistics past ``input_shift``'s bars,
and then said, not copied: random augmentation in the step (noise, flips) should not
reach the probes.

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
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_pre_hook

from lightning_cnnviz.core.input_shift import split_shift
from lightning_cnnviz.core.probe_pass import in_probe_pass

__all__ = ["Followed", "StepTap", "channel_affine", "step_text", "step_transform"]

KEEP = 4  # images of the first batch compared; enough to fit a scale and shift per channel
_FIT = 1e-3  # a scale and shift fits where what is left is this small against the spread
_SAME = 1e-5  # inputs this close are alike (float noise of a copy or a cast)


class Followed(NamedTuple):
    """How a step changes the images before ``module`` (``scale``, ``offset``: per channel)."""

    module: nn.Module
    name: str  # its name in the model ("" for the model itself)
    scale: Tensor | None  # None: the change is no scale and shift; it cannot be followed
    offset: Tensor | None
    figures: dict[str, float]


def channel_affine(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor] | None:
    """Per-channel ``(scale, offset)`` with ``target = source * scale + offset``, or ``None``.

    ``source``, ``target``: ``(N, C, ...)`` of one shape. ``None`` where a least-squares fit
    leaves more than ``_FIT`` of a channel's spread unexplained, or a channel of ``source``
    is constant while ``target``'s is not.
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
    if not bool((left <= _FIT * spread.clamp_min(1e-12)).all()):  # NaN fits nothing
        return None
    return scale.to(target.dtype), offset.to(target.dtype)


class StepTap:
    """The first module of ``model`` a training batch reaches with a tensor shaped as its images.

    One global forward pre-hook for one batch (no hook on the model's modules, which the
    contract keeps bare): the first call of one of ``model``'s modules whose first tensor
    argument has the images' shape is kept (its first ``KEEP`` items), and the hook is
    removed then, or by ``remove``. Probe passes are passed over.
    """

    def __init__(self, model: nn.Module, images: Tensor) -> None:
        self.images = images[:KEEP].detach().clone()
        self.shape = tuple(images.shape)
        self.found: tuple[nn.Module, str, Tensor] | None = None
        self._names = {id(module): name for name, module in model.named_modules()}
        self._handle: Any = register_module_forward_pre_hook(self._read)

    def _read(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self.found is not None or id(module) not in self._names or in_probe_pass():
            return
        x = next((a for a in args if isinstance(a, Tensor)), None)
        if x is not None and tuple(x.shape) == self.shape and x.is_floating_point():
            self.found = (module, self._names[id(module)], x[:KEEP].detach().clone())
            self.remove()

    def remove(self) -> None:
        """Take the hook off (once one call is kept, or the batch ended without one)."""
        if self._handle is not None:
            self._handle.remove()
        self._handle = None


def step_transform(tap: StepTap, probe_input: Tensor) -> Followed | None:
    """How the step changed the images before the tapped module, or ``None`` (alike, unread).

    ``probe_input``: what the tapped module received in a probe pass of ``tap.images``.
    """
    if tap.found is None:
        return None
    module, name, seen = tap.found
    given = probe_input.detach().to(seen.dtype)
    if given.shape != seen.shape or not (seen.isfinite().all() and given.isfinite().all()):
        return None  # NaN pixels say nothing of a scale: the monitors say they are there
    if torch.allclose(given, seen, rtol=_SAME, atol=_SAME * float(seen.abs().max()) + 1e-12):
        return None
    fit = channel_affine(given, seen)
    if fit is not None:
        return Followed(module, name, *fit, {})
    if figures := split_shift(seen, given):
        return Followed(module, name, None, None, figures)
    return None  # random augmentation in the step: the probes stay as the data gives them


def step_text(found: Followed) -> str:
    """What the training step does to the images outside ``forward``, in words."""
    where = f"`{found.name}`" if found.name else "`forward`"
    if found.scale is not None and found.offset is not None:
        scale, offset = found.scale.tolist(), found.offset.tolist()
        mean = [-b / a if a else 0.0 for a, b in zip(scale, offset, strict=True)]
        std = [1 / a if a else float("inf") for a in scale]
        return (
            f"the training step hands {where} its images as `(x - {_values(mean)}) / "
            f"{_values(std)}`, outside what the probe passes run (they read the images "
            "from the datasets): the probe passes do the same there (move it into the "
            "dataset's transform or `forward` to keep it in one place)"
        )
    f = found.figures
    return (
        f"the training step changes the images before {where} outside what the probe "
        f"passes run (they read the images from the datasets), and not as a scale and "
        f"shift it can follow: channel {int(f['channel'])} reaches it with mean "
        f"{f['train_mean']:.3g} and spread {f['train_std']:.3g} in training, "
        f"{f['val_mean']:.3g} and {f['val_std']:.3g} in a probe pass, so the monitors show "
        "the model on other inputs than training's (move that step into the dataset's "
        "transform or `forward`)"
    )


def _values(values: list[float]) -> str:
    """One figure, or a tuple of them per channel (the first 4)."""
    shown = [f"{v:.3g}" for v in values[:4]]
    if len(values) == 1:
        return shown[0]
    return "(" + ", ".join(shown) + (", ...)" if len(values) > 4 else ")")
