"""A rectifier on a classifier's outputs: how it is found and how it is said.

A ReLU after the last layer (or on class maps a global pool turns into the logits, as in
SqueezeNet) holds every class whose output it zeroes at 0: that logit gets no gradient
and is never predicted over the others. ``pools_to`` tells that the recorded activation
*is* the output (the recorder compares it with the logits), ``output_activation_text``
says it.

Example::

    >>> maps = torch.relu(torch.randn(2, 3, 4, 4))
    >>> pools_to(maps, maps.mean((2, 3)))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "QUIET_LOGS",
    "clipped_classes",
    "output_activation_gone",
    "output_activation_text",
    "pools_to",
]


def output_activation_text(
    step: int, epoch: int, site: str, dead: Sequence[int], share: float
) -> tuple[str, dict[str, float]]:
    """A rectifier on a classifier's logits: its ``dead`` units are classes stuck at 0.

    Their logit is 0 on every probe image: it gets no gradient, and a class whose logit
    cannot rise above 0 is never predicted over the others (held out: a ReLU after the
    last Linear left 6-7 of 10 digit classes at 0, val accuracy 47-49% against 94%).

    Example::

        >>> print(output_activation_text(10, 0, "net.13", [0, 1, 7], 0.3)[0][:76])
        At step 10 (epoch 0): the model's output passes through `net.13`, an activat
    """
    shown = ", ".join(map(str, dead[:16])) + (", ..." if len(dead) > 16 else "")
    through = (
        f"passes through `{site}`, an activation that is 0 below zero"
        if site
        else "is never below 0 (an activation that is 0 below zero, `F.relu` in `forward`?)"
    )
    message = (
        f"At step {step} (epoch {epoch}): the model's output {through}: "
        f"{len(dead)} of its outputs ({share:.0%}; classes "
        f"{shown}) are 0 on every probe image. Those logits get no gradient, and a class "
        "whose logit cannot rise above 0 is never predicted over the others. Try: remove "
        "the activation after the last layer (`cross_entropy` takes raw logits, negative "
        "ones included)."
    )
    return message, {"dead_outputs": float(len(dead)), "share": share}


# logs running with no output 0 on every probe image: the told classes score again (a ReLU
# on the logits keeps some class at 0 at most logs, a new one as another comes back: hunt 95)
QUIET_LOGS = 2


def output_activation_gone(
    step: int, epoch: int, since: int, classes: Sequence[int]
) -> tuple[str, dict[str, float]]:
    """The classes ``output_activation_text`` told at step ``since`` score again: a note.

    No output has been 0 on every probe image for ``QUIET_LOGS`` logs (held out, hunt 95:
    one class of a torchvision SqueezeNet, whose classifier ends in a ReLU, at 0 at step 40
    of a run that ended at 96% with every class recalled, told a problem to the end).

    Example::

        >>> print(output_activation_gone(90, 2, 40, [0])[0][:67])
        At step 90 (epoch 2): the outputs told at step 40 (class 0) and all
    """
    shown = ", ".join(map(str, classes[:16])) + (", ..." if len(classes) > 16 else "")
    word = "class" if len(classes) == 1 else "classes"
    message = (
        f"At step {step} (epoch {epoch}): the outputs told at step {since} ({word} {shown}) "
        f"and all others have been above 0 on some probe image for {QUIET_LOGS} logs: they "
        "get a gradient and can be predicted. "
        "Reported as a problem then; a note now. The activation after the last layer can "
        "silence a class again: a later one is reported anew."
    )
    return message, {"reported_step": float(since), "dead_outputs": 0.0}


def clipped_classes(logits: Tensor | None) -> list[int]:
    """The classes whose logit is exactly 0 on every probe image, where no logit is below 0.

    A rectifier applied in ``forward`` (no module to watch) leaves that mark on the logits.

    Example::

        >>> clipped_classes(torch.relu(torch.tensor([[-1.0, 2.0, -3.0], [-2.0, 1.0, 0.5]])))
        [0]
        >>> clipped_classes(torch.tensor([[-1.0, 2.0], [0.0, 1.0]]))
        []
    """
    if logits is None or logits.dim() != 2 or logits.shape[1] < 2:
        return []
    out = logits.detach().float()
    if bool((out < 0).any()):
        return []
    return (out == 0).all(0).nonzero().flatten().tolist()


def pools_to(maps: Tensor, logits: Tensor) -> bool:
    """Whether ``maps`` (N, K, *positions) averaged or maxed over its positions is ``logits``.

    Example::

        >>> maps = torch.relu(torch.randn(2, 3, 4, 4))
        >>> pools_to(maps, maps.mean((2, 3))), pools_to(maps, maps.amax((2, 3)))
        (True, True)
        >>> pools_to(maps, maps.mean((2, 3)) + 1), pools_to(maps[:, :2], maps.mean((2, 3)))
        (False, False)
    """
    if maps.ndim < 3 or maps.shape[:2] != logits.shape:
        return False
    dims, flat = tuple(range(2, maps.ndim)), maps.detach().float()
    target = logits.float()
    return any(
        torch.allclose(pooled, target, rtol=1e-4, atol=1e-5)
        for pooled in (flat.mean(dims), flat.amax(dims))
    )
