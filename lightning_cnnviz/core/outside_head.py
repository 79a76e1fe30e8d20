"""A model output that a head outside ``forward`` turns into the class scores: features.

A ``LightningModule`` may return features from ``forward`` and apply its head in the steps
(``self.head(self(x))``). Its (N, W) output, wider than the labels' K classes, then looks
like the logits of W classes of which the labels use K (as a 1000-class torchvision model
trained on 10 labels really is). What tells them apart is the head: a ``Linear`` of the
model taking W inputs that ``forward`` never calls (held-out hunt 117: a (N, 64) ReLU'd
feature vector read as 64 classes' logits, "6 of its outputs (classes 6, 9, 14, 20, 31,
36) are 0 on every probe image", on a run at 96.6% val accuracy with 10 classes).
``ProbeReader.logits_key`` asks it once per fit, so every monitor reads the same.

Example::

    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.feat, self.head = nn.Sequential(nn.Linear(4, 64), nn.ReLU()), nn.Linear(64, 10)
    ...     def forward(self, x):
    ...         return self.feat(x)  # the head is applied in the steps
    >>> net, x = Net(), torch.ones(2, 4)
    >>> outside_head(net, net(x), 10, lambda: net(x))[:59]
    'the model returns (2, 64): `head` (Linear 64 -> 10), which '
    >>> net.head = nn.Linear(64, 32)  # a second task's head on 64 logits: no class head
    >>> outside_head(net, net(x), 10, lambda: net(x))
    ''
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from lightning_cnnviz.core.layer_calls import count_call_sites, in_weight_average

__all__ = ["outside_head"]


def outside_head(
    model: nn.Module, output: Tensor, num_classes: int | None, run: Callable[[], Any]
) -> str:
    """Why ``output`` is no class scores: a head ``forward`` never calls reads it ("": none).

    Only an (N, W) ``output`` wider than the ``num_classes`` the labels hold is asked (at
    W = K it is read as the logits); a ``Linear`` with W inputs and the labels' K outputs
    (one for labels 0/1) that the pass ``run`` performs does not call, outside a weight
    average's copy, is the head applied in the steps. Another width is no class head: an
    auxiliary or second-task head reading the logits in the steps (held-out hunt 120: (N,
    1000) logits trained on 10 labels, a ``Linear(1000, 32)`` read in ``training_step``,
    took the logits for features). One extra pass, on such outputs only.

    Example::

        >>> import torch
        >>> net = nn.Sequential(nn.Linear(4, 1000), nn.ReLU())  # wide logits, no head
        >>> x = torch.ones(2, 4)
        >>> outside_head(net, net(x), 10, lambda: net(x))
        ''
    """
    if not num_classes or output.dim() != 2 or output.shape[1] <= num_classes:
        return ""
    width = output.shape[1]
    heads = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.in_features == width and name
        and _scores(m.out_features, num_classes) and not in_weight_average(model, name)
    }  # fmt: skip
    if not heads:
        return ""
    counts = count_call_sites(model, heads, run)
    uncalled = [name for name in heads if not counts.get(name)]
    if not uncalled:
        return ""
    head = heads[uncalled[0]]
    return (
        f"the model returns {tuple(output.shape)}: `{uncalled[0]}` (Linear {width} -> "
        f"{head.out_features}), which `forward` never calls, takes that width: features, the "
        f"head applied in the steps, not the logits of the {num_classes} classes its labels "
        "hold; return the logits from `forward` (the features beside them, "
        "`output_key` naming the logits)"
    )


def _scores(outputs: int, num_classes: int) -> bool:
    """Whether a head of ``outputs`` units scores the labels' classes (one: labels 0/1)."""
    return outputs == num_classes or (num_classes == 2 and outputs == 1)
