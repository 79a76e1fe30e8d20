"""Whether the model's ``forward`` takes the monitors' probe images, and why not, in words.

A probe pass calls ``forward(images)`` on a batch of the probe's own size. Two ways a
model refuses that are told once, with their fix, instead of as the call's error:

- ``forward`` needs another input besides the images (``forward(x, lengths)``);
- ``forward`` fixes the batch size (``x.view(32, -1)``): it runs on batches of the
  training batch size only.

Example::

    >>> class Fixed(nn.Module):
    ...     def forward(self, x):
    ...         return x.view(4, -1).sum(1)
    >>> why_not(Fixed(), torch.zeros(1, 3), batch_size=4)[:56]
    'the model runs on batches of 4 (the training batch size)'
    >>> why_not(nn.Linear(3, 2), torch.zeros(1, 3), batch_size=4) is None
    True
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["call_error", "keyword_input", "why_not"]

OTHER_SIZES = (1, 2, 3)  # batch sizes a probe may have, tried against the training one


def call_error(model: nn.Module, x: Tensor) -> Exception | None:
    """The error of a probe pass of ``model`` on ``x``, or ``None`` where it runs."""
    try:
        with probe_mode(model):
            model(x)
    except Exception as err:
        return err
    return None


def why_not(model: nn.Module, x: Tensor, batch_size: int | None) -> str | None:
    """Why ``model`` cannot take probe batches like ``x`` (one image), or ``None`` if unknown.

    ``batch_size``: the training loader's, where known.
    """
    extra = _other_inputs(model)
    if extra:
        names = ", ".join(f"`{n}`" for n in extra)
        return (
            f"the model's `forward` needs {names} besides the images (`forward(x, "
            f"{', '.join(extra)})`), and a probe pass calls `forward(images)`: give "
            f"{'it' if len(extra) == 1 else 'them'} a default (`{extra[0]}=None`) for the "
            "monitors to read the model"
        )
    if not batch_size or batch_size in OTHER_SIZES:
        return None
    if call_error(model, _repeated(x, batch_size)) is not None:
        return None
    errors = [call_error(model, _repeated(x, n)) for n in OTHER_SIZES]
    if not all(errors):
        return None
    return (
        f"the model runs on batches of {batch_size} (the training batch size) only: on "
        f"{OTHER_SIZES[0]} image it fails ({type(errors[0]).__name__}: {errors[0]}), as when "
        f"`forward` fixes the batch size (`x.view({batch_size}, -1)`), and the probes have "
        "sizes of their own: write `x.flatten(1)` or `x.view(x.size(0), -1)`"
    )


def _other_inputs(model: nn.Module) -> list[str]:
    """The inputs ``forward`` requires besides the first (none where it takes ``*args``)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin or scripted forward: not known
        return []
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return []
    required = [p.name for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
    return required[1:]


def keyword_input(model: nn.Module) -> str | None:
    """The keyword ``forward`` takes its images as, where it takes no positional input.

    ``forward(self, *, pixel_values)`` (held out, setups hunt 21: every probe pass raised
    "forward() takes 1 positional argument but 2 were given"): its one required
    keyword-only parameter, else its only keyword-only one; ``None`` elsewhere.

    Example::

        >>> class Net(nn.Module):
        ...     def forward(self, *, pixel_values, mask=None):
        ...         return pixel_values
        >>> keyword_input(Net()), keyword_input(nn.Linear(2, 2))
        ('pixel_values', None)
    """
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    ):
        return None
    keywords = [p for p in params if p.kind is p.KEYWORD_ONLY]
    required = [p for p in keywords if p.default is p.empty]
    found = required if required else keywords
    return found[0].name if len(found) == 1 else None


def _repeated(x: Tensor, n: int) -> Tensor:
    """``x``'s first image ``n`` times."""
    return torch.cat([x[:1]] * n)
