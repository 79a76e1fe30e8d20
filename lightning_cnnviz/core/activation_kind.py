"""What an activation module computes, told by probing it: rectifier, leaky, saturating.

Class names lie (timm has its own ``GELU``, ``Swish``, ``HardSwish`` classes; a user's
``MyAct`` may be anything), so the diagnosis asks the module itself: one call on a
small test tensor (eval mode, no gradient, flags restored, no RNG drawn):

* ``"rectifier"``: the output is exactly 0 for every negative input (ReLU, ReLU6):
  a unit that is never positive gets no gradient at all, it can *die*;
* ``"saturating"``: bounded on both sides and flat at both ends (Sigmoid, Tanh,
  Hardtanh, Hardsigmoid): its gradient vanishes at the rails;
* ``"leaky"``: any other pointwise non-linearity (LeakyReLU, PReLU, ELU, SELU, GELU,
  SiLU, Mish, Hardswish, Softplus): it passes gradient below zero, so a unit is never
  dead in the ReLU sense, only *dormant* (little activity compared with its layer).

``None`` for a module that is not a pointwise non-linearity (pooling, softmax, identity,
dropout, a shape change, an error).

Example::

    >>> from torch import nn
    >>> [activation_kind(m) for m in (nn.ReLU(), nn.GELU(), nn.Sigmoid(), nn.Identity())]
    ['rectifier', 'leaky', 'saturating', None]
    >>> activation_kind(nn.PReLU(4), channels=4), activation_kind(nn.Softmax(dim=1))
    ('leaky', None)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["ActivationKind", "activation_kind", "is_activation", "saturation_range", "upper_rail"]

ActivationKind = Literal["rectifier", "leaky", "saturating"]

# Test inputs: negatives near and far from 0, zero, positives near and far.
_VALUES = (-40.0, -20.0, -6.0, -3.0, -1.0, -0.5, -0.1, -0.01, 0.0, 0.01, 0.1, 0.5, 1.0, 3.0)
_VALUES += (6.0, 20.0, 40.0)


def _call(module: nn.Module, x: Tensor) -> Tensor | None:
    try:
        # its forward alone: hooks on it (another monitor's window, the user's) must not
        # see a test tensor (setups hunt 56: a second ActivationMonitor counted it as a
        # training output, "expected 8 channels, got an output with 3"); a clone: an
        # in-place module must not alter ``x``
        out = module.forward(x.clone())
    except Exception:
        return None
    if not isinstance(out, Tensor) or out.shape != x.shape:
        return None
    return out.detach().float()


def _response(module: nn.Module, channels: int) -> Tensor | None:
    """``f(v)`` per test value (shape ``(len(_VALUES),)``), or None if ``f`` is not pointwise."""
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    values = torch.tensor(_VALUES, device=device, dtype=dtype)
    n, c = len(_VALUES), max(1, channels)
    # channel c holds the values rolled by c: a pointwise f gives the same roll back
    rolled = torch.stack([values.roll(i) for i in range(c)], dim=1)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for shape in ((n, c, 1, 1), (n, c)):  # conv-like first, then dense
                out = _call(module, rolled.view(shape))
                if out is not None:
                    out = out.reshape(n, c)
                    back = torch.stack([out[:, i].roll(-i) for i in range(c)], dim=1)
                    if not torch.allclose(back, back[:, :1].expand_as(back), atol=1e-5):
                        return None  # values mix across entries: not pointwise
                    return back[:, 0].cpu()
    finally:
        module.train(was_training)
    return None


def activation_kind(module: nn.Module, channels: int = 3) -> ActivationKind | None:
    """Probe ``module`` on a small test tensor and say what kind of activation it is.

    Args:
        module: the module to probe (left in its training mode, parameters untouched).
        channels: its channel count, for modules with per-channel parameters (PReLU).
    """
    f = _response(module, channels)
    if f is None or not torch.isfinite(f).all():
        return None
    x = torch.tensor(_VALUES, dtype=f.dtype)  # the response's: any default dtype
    if torch.allclose(f, x, atol=1e-6) or torch.allclose(f, f[0].expand_as(f), atol=1e-6):
        return None  # identity or constant: nothing to diagnose
    if (f[x < 0] == 0).all():
        return "rectifier"
    span = float(f.max() - f.min())
    flat_ends = abs(float(f[0] - f[1])) < 1e-3 * span and abs(float(f[-1] - f[-2])) < 1e-3 * span
    return "saturating" if flat_ends else "leaky"


def is_activation(module: nn.Module) -> bool:
    """A parameter-free leaf module that computes a pointwise non-linearity.

    Example::

        >>> is_activation(nn.SiLU()), is_activation(nn.MaxPool2d(2)), is_activation(nn.Dropout())
        (True, False, False)
    """
    if next(module.children(), None) is not None or next(module.parameters(), None) is not None:
        return False
    return activation_kind(module) is not None


def _steps(f: Tensor) -> bool:
    """Whether response ``f`` is one value on each side of 0: a step, with no slope at all.

    A comparison made a float (``(x > 0).float()``) or ``torch.sign``: no input is
    saturated, the step passes no gradient anywhere (the frozen layers' finding, hunt 34:
    told "a rail of ReLU6, a clamp").
    """
    x = torch.tensor(_VALUES, dtype=f.dtype)
    below, above = f[x < 0], f[x > 0]
    return bool((below == below[0]).all() and (above == above[0]).all())


def upper_rail(module: nn.Module, channels: int = 3) -> float | None:
    """The top a ``"rectifier"`` is capped at (``ReLU6``'s 6, a ``clamp(0, k)``), else None.

    Its outputs there pass no gradient, as a sigmoid's at its rails. None for a step
    (``_steps``): it has no slope to saturate from.

    Example::

        >>> upper_rail(nn.ReLU6()), upper_rail(nn.ReLU())
        (6.0, None)
    """
    if activation_kind(module, channels) != "rectifier":
        return None
    f = _response(module, channels)
    if f is None or _steps(f) or abs(float(f[-1] - f[-2])) > 1e-6 * max(1.0, abs(float(f[-1]))):
        return None
    return round(float(f[-1]), 6) if float(f[-1]) > 0 else None


def saturation_range(module: nn.Module, channels: int = 3) -> tuple[float, float] | None:
    """The output range ``(f(-40), f(40))`` of a ``"saturating"`` module, else None.

    None for a step (``_steps``: ``torch.sign``), which has no slope to saturate from.

    Example::

        >>> saturation_range(nn.Sigmoid()), saturation_range(nn.ReLU())
        ((0.0, 1.0), None)
    """
    if activation_kind(module, channels) != "saturating":
        return None
    f = _response(module, channels)
    if f is None or _steps(f):
        return None
    return round(float(f[0]), 6), round(float(f[-1]), 6)
