"""Training batches in class order: a loader that does not shuffle a class-sorted set.

Nothing here knows about Lightning. With ``shuffle=False`` on a training set sorted by
class, each batch holds one class: the model learns to predict the class it saw last
(val at chance from the first validation, every image one class), and the batch loss
swings at every class boundary, which reads as loss spikes and dying units whose
learning-rate remedies fix nothing. The labels in the loader's order tell it before the
first step.

Example::

    >>> sorted_labels = torch.arange(10).repeat_interleave(50)
    >>> f = class_runs(sorted_labels)
    >>> round(f["same_class_share"], 3), round(f["expected_share"], 2)
    (0.982, 0.1)
    >>> class_runs(torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(0)))
    {}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["SAME_CLASS", "class_runs", "order_text"]

SAME_CLASS = 0.5  # consecutive training items of one class at least this often: in class order
# (in random order: the sum of the squared class shares, 0.1 for ten balanced classes)


def class_runs(labels: Tensor) -> dict[str, Any]:
    """How often consecutive items share a class, where that says "sorted" (``{}``: it does not).

    ``labels``: the class labels in the order the training loader reads them. Sorted
    when consecutive labels agree at least ``SAME_CLASS`` of the time and at least twice
    as often as random order would (``expected_share``, the sum of squared shares).
    """
    labels = labels.long().reshape(-1)
    if labels.numel() < 3:
        return {}
    same = float((labels[1:] == labels[:-1]).float().mean())
    shares = torch.bincount(labels - labels.min()).float() / labels.numel()
    expected = float((shares**2).sum())
    if same < SAME_CLASS or same < 2 * expected:
        return {}
    return {"same_class_share": same, "expected_share": expected}


def order_text(found: dict[str, Any]) -> str:
    """The ``unshuffled_batches`` finding in words, with what to do."""
    return (
        f"Training batches come in class order: {found['same_class_share']:.0%} of "
        "consecutive training items share a class (in random order "
        f"{found['expected_share']:.0%}), and the training loader does not shuffle. Each "
        "batch then holds one class: the model learns the class it saw last, and the loss "
        "swings at every class boundary. Pass `shuffle=True` to the training DataLoader (or "
        "a shuffling sampler)."
    )
