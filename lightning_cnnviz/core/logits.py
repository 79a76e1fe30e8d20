"""Class scores as logits: a softmax model's probabilities, one binary logit, class indices.

Nothing here knows which entry of a model's output holds the scores (``outputs.py`` finds
it): the functions read a tensor of scores so that every figure computed from logits
(confidence, calibration, cross-entropy, a CAM's class score) is right whatever the model
ends in.

Example::

    >>> import torch
    >>> p = torch.tensor([[0.9, 0.1]])  # a model ending in a softmax
    >>> torch.allclose(as_logits(p).softmax(1), p)
    True
    >>> two_class(torch.tensor([[2.0]])).tolist()  # one binary logit, as two classes'
    [[-1.0, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "SingleLogit",
    "as_logits",
    "class_logits",
    "class_scores",
    "dense_output",
    "is_simplex",
    "single_logit",
    "two_class",
]


def dense_output(logits: Tensor) -> bool:
    """Whether ``logits`` are per position (N, K, ...) rather than per image (N, K)."""
    return logits.dim() > 2


def is_simplex(out: Tensor) -> Tensor:
    """Whether every row of ``(N, K)`` outputs is a probability vector (a softmax model's).

    A 0-dim bool tensor, where the outputs live (no host transfer).
    """
    return (out >= 0).all() & ((out.sum(1) - 1.0).abs() <= 1e-3).all()


def as_logits(outputs: Tensor) -> Tensor:
    """``outputs`` as logits: a softmax model's probabilities become their logarithms.

    ``log p`` are logits of the same distribution (``softmax(log p) = p``), so every
    figure read from logits (confidence, calibration, cross-entropy) is right for a model
    that ends in a softmax, instead of the softmax of its probabilities (which reads a
    sure model as under-confident). Other outputs pass unchanged (as float).

    Example::

        >>> import torch
        >>> p = torch.tensor([[0.9, 0.1]])
        >>> torch.allclose(as_logits(p).softmax(1), p), as_logits(torch.tensor([[2.0, -1.0]]))
        (True, tensor([[ 2., -1.]]))
    """
    out = outputs.float()
    return torch.where(is_simplex(out), out.clamp_min(1e-12).log(), out)


@dataclass(frozen=True)
class SingleLogit:
    """An ``output_key`` for a binary classifier's one logit, read as two classes' logits.

    ``ProbeReader.logits_key`` gives it where the model returns one score per sample
    ((N, 1), or (N,)) and the labels are 0/1 (a ``BCEWithLogitsLoss`` model): every
    monitor then reads the logits through ``logits_from`` as ``two_class``'s (N, 2).

    Attributes:
        key: where the logit sits in the model's output (an ``output_key``).
    """

    key: Any = None


def single_logit(logits: Tensor) -> bool:
    """Whether ``logits`` hold one score per sample: (N, 1, ...), (N,) or a scalar."""
    return logits.dim() <= 1 or logits.shape[1] == 1


def two_class(logits: Tensor) -> Tensor:
    """One binary logit ``z`` per sample (or position) as two classes' logits ``[-z/2, z/2]``.

    Their softmax is ``[1 - sigmoid(z), sigmoid(z)]``, their cross-entropy against a 0/1
    label is ``BCEWithLogitsLoss``'s, their argmax is ``z > 0``, and a class's score
    rises with the evidence for that class (``-z`` for class 0), as pytorch-grad-cam's
    ``BinaryClassifierOutputTarget`` picks it: so confidence, calibration, accuracy and
    a CAM of either class read the same as for a two-logit model.

    Example::

        >>> z = torch.tensor([[2.0], [-1.0]])
        >>> two = two_class(z)
        >>> two.tolist(), torch.allclose(two.softmax(1)[:, 1:], torch.sigmoid(z))
        ([[-1.0, 1.0], [0.5, -0.5]], True)
        >>> tuple(two_class(torch.zeros(3)).shape), tuple(two_class(torch.zeros(2, 1, 4, 4)).shape)
        ((3, 2), (2, 2, 4, 4))
    """
    z = logits.reshape(1, 1) if logits.dim() == 0 else logits
    z = z[:, None] if z.dim() == 1 else z
    return torch.cat([-z / 2, z / 2], dim=1)


def class_logits(logits: Tensor | None, labels: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """``(logits, labels)`` where ``labels`` are class indices of ``(N, K)`` ``logits``, else None.

    One logit with 0/1 labels reads as two classes (``two_class``). None for multi-hot
    or dense labels, fewer than 2 classes, labels outside ``[0, K)`` or counts that differ.

    Example::

        >>> read = class_logits(torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 0]))
        >>> read[0].shape, class_logits(torch.zeros(2, 3), torch.tensor([0, 3]))
        (torch.Size([2, 2]), None)
    """
    if logits is None or labels is None or labels.ndim != 1 or len(labels) != len(logits):
        return None
    if single_logit(logits) and int(labels.max()) <= 1:
        logits = two_class(logits)
    if logits.dim() != 2 or logits.shape[1] < 2:
        return None
    if int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]:
        return None
    return logits, labels.to(logits.device)


def class_scores(logits: Tensor | None, labels: Tensor | None) -> tuple[int, float, float] | None:
    """``(K, accuracy, cross-entropy)`` of ``class_logits``' read, else None.

    Example::

        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
        >>> k, accuracy, loss = class_scores(logits, labels)
        >>> k, accuracy, round(loss, 3)
        (2, 0.5, 1.127)
    """
    read = class_logits(logits, labels)
    if read is None:
        return None
    scores, targets = read[0].float(), read[1]
    accuracy = float((scores.argmax(1) == targets).float().mean())
    return scores.shape[1], accuracy, float(torch.nn.functional.cross_entropy(scores, targets))
