"""Gradients carried over from the previous optimizer step: ``zero_grad`` did not run.

Nothing here knows about Lightning. The first backward after an optimizer step must
find the optimizer's gradients reset (``None`` or zero), whether Lightning zeroes them
(automatic optimisation, with or without ``accumulate_grad_batches``: the window starts
after a step) or the user does (manual optimisation). Gradients still there mean each
step adds every earlier step's gradient: an effective learning rate that grows step by
step (a run thrashing between 12% and 65% under Adam, at chance under SGD). It happens
when ``optimizer_zero_grad`` is overridden to do nothing, or ``zero_grad`` is forgotten
in a manual loop. One optimizer only: with several (a GAN), the generator's backward
legitimately reaches the discriminator's parameters after the discriminator's step.

Example::

    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> leftover_gradient(opt) is None  # no gradient yet
    True
    >>> w.grad = torch.tensor([0.0, -2.0, 0.5])
    >>> float(leftover_gradient(opt))
    2.0
    >>> carry_over_verdict(2.0, step=40, epoch=1)[0]
    'gradients_not_reset'
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["carry_over_verdict", "leftover_gradient"]


def leftover_gradient(optimizer: Any) -> Tensor | None:
    """The largest ``|g|`` the optimizer's parameters hold (a device scalar, no sync), or None."""
    grads = [
        p.grad.detach()
        for group in getattr(optimizer, "param_groups", ())
        for p in group["params"]
        if p.grad is not None and p.grad.layout == torch.strided and p.grad.numel()
    ]
    if not grads:
        return None
    return torch.stack([g.abs().amax().float() for g in grads]).amax()


def carry_over_verdict(leftover: float, step: int, epoch: int) -> tuple[str, str, dict[str, Any]]:
    """``(kind, message, figures)`` of gradients found before the first backward of a step."""
    message = (
        f"At step {step} (epoch {epoch}): gradients were not reset before this step's "
        f"backward: the parameters still held the previous steps' gradients (largest "
        f"|g| {leftover:.3g}), so every step adds all earlier gradients: an effective "
        "learning rate that grows step by step. `optimizer.zero_grad()` did not run. What "
        "to try: remove an `optimizer_zero_grad` override that does nothing (or call "
        "`optimizer.zero_grad()` in it); in manual optimisation call `opt.zero_grad()` "
        "before each `manual_backward`; to accumulate gradients on purpose, use "
        "`Trainer(accumulate_grad_batches=N)`."
    )
    return "gradients_not_reset", message, {"leftover_grad": leftover}
