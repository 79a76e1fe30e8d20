"""What one validation showed: logged losses and accuracies, calibration, per-class accuracy.

Nothing here knows about Lightning. ``pick_metric`` reads a value the module
logged, ``expected_calibration_error`` and ``per_class_accuracy`` measure the
probes' logits, ``figures`` moves all of it to the host in one transfer, and an
``Evaluation`` holds the result for the detector.

Example::

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]])
    >>> labels = torch.tensor([0, 1, 1, 0])
    >>> round(float(expected_calibration_error(logits, labels)), 4)
    0.4908
    >>> per_class_accuracy(logits, labels).tolist()
    [0.5, 0.5]
    >>> Evaluation(step=10, epoch=0, train_loss=0.25, val_loss=0.5).gap_loss
    0.25
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Evaluation",
    "expected_calibration_error",
    "figures",
    "per_class_accuracy",
    "pick_metric",
]


def expected_calibration_error(logits: Tensor, labels: Tensor, n_bins: int = 15) -> Tensor:
    """Expected calibration error of softmax confidences, on the logits' device (0-dim float32).

    Confidence is the top softmax probability; samples fall into ``n_bins`` equal
    bins ``(k/n, (k+1)/n]`` of it; ECE is ``sum_b |acc_b - conf_b| * n_b / N``
    (Guo et al., 2017). An empty input gives 0.

    Hand-written rather than torchmetrics' ``multiclass_calibration_error``, which
    bins ``[k/n, (k+1)/n)`` with a bin of its own for confidence 1.0: it agrees to
    float precision except where a confidence lies on a bin edge, and a saturated
    softmax (confidence exactly 1.0, common once a model overfits) is such an edge.

    Example::

        >>> sure = torch.tensor([[50.0, 0.0], [0.0, 50.0]])
        >>> float(expected_calibration_error(sure, torch.tensor([1, 0])))
        1.0
    """
    probs = torch.softmax(logits.detach().float(), dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels.to(predicted.device)).float()
    if confidence.numel() == 0:
        return confidence.new_zeros(())
    bins = (confidence * n_bins).ceil().long().clamp(1, n_bins) - 1
    count = torch.zeros(n_bins, device=confidence.device).index_add_(
        0, bins, torch.ones_like(correct)
    )
    conf_sum = torch.zeros_like(count).index_add_(0, bins, confidence)
    acc_sum = torch.zeros_like(count).index_add_(0, bins, correct)
    return (acc_sum - conf_sum).abs().sum() / confidence.numel()


def per_class_accuracy(logits: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Accuracy per class: ``(K,)`` float32 on the logits' device, NaN for an absent class.

    Example::

        >>> per_class_accuracy(torch.eye(3)[[0, 1, 0]], torch.tensor([0, 1, 1])).tolist()
        [1.0, 0.5, nan]
    """
    num_classes = num_classes or logits.shape[1]
    labels = labels.to(logits.device).long()
    correct = (logits.argmax(dim=1) == labels).float()
    total = torch.zeros(num_classes, device=logits.device).index_add_(
        0, labels, torch.ones_like(correct)
    )
    hits = torch.zeros_like(total).index_add_(0, labels, correct)
    return torch.where(total > 0, hits / total.clamp_min(1), torch.full_like(total, math.nan))


def pick_metric(metrics: Mapping[str, Any], key: str, epoch_level: bool) -> Tensor | None:
    """A logged value as a 0-dim float tensor, or ``None``.

    ``self.log(key, on_step=True, on_epoch=True)`` logs ``key_step`` and ``key_epoch``;
    ``epoch_level`` prefers ``key_epoch`` (current once the training epoch ended),
    else the latest value (``key``, ``key_step``).

    Example::

        >>> float(pick_metric({"a": 1.0, "a_step": 1.0, "a_epoch": 2.0}, "a", epoch_level=True))
        2.0
        >>> float(pick_metric({"a": 1.0, "a_epoch": 2.0}, "a", epoch_level=False))
        1.0
    """
    order = ("_epoch", "", "_step") if epoch_level else ("", "_step", "_epoch")
    value = next((metrics[key + s] for s in order if key + s in metrics), None)
    return None if value is None else torch.as_tensor(value).detach().float().reshape(())


def figures(
    logged: Mapping[str, Tensor | None],
    logits: Mapping[str, Tensor | None],
    labels: Mapping[str, Tensor | None],
) -> tuple[dict[str, float], list[float]]:
    """Logged values plus ``ece_{split}`` per probe, and per-class val accuracy, on the host.

    Everything is reduced where the logits live and moved to the host in one transfer.
    A ``None`` entry (not logged, no usable logits) is left out.

    Example::

        >>> logits = {"val": torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "train": None}
        >>> host, per_class = figures({"val_loss": torch.tensor(0.5)}, logits,
        ...                           {"val": torch.tensor([0, 0]), "train": None})
        >>> sorted(host), per_class
        (['ece_val', 'val_loss'], [0.5, nan])
    """
    values = {name: value for name, value in logged.items() if value is not None}
    for split, out in logits.items():
        if out is not None and labels[split] is not None:
            values[f"ece_{split}"] = expected_calibration_error(out, labels[split])
    device = next((v.device for v in values.values()), torch.device("cpu"))
    # the trailing zero keeps the stack non-empty when nothing was logged
    parts = [
        torch.stack([*(v.to(device) for v in values.values()), torch.zeros((), device=device)])
    ]
    if logits.get("val") is not None and labels.get("val") is not None:
        parts.append(per_class_accuracy(logits["val"], labels["val"]).to(device))
    flat = torch.cat(parts).tolist()
    return dict(zip(values, flat, strict=False)), flat[len(values) + 1 :]


@dataclass(frozen=True)
class Evaluation:
    """What one validation showed. Any figure may be ``None`` (not logged).

    Example::

        >>> ev = Evaluation(step=20, epoch=1, train_acc=0.75, val_acc=0.5, ece_val=0.25)
        >>> ev.gap_acc, ev.ece_gap
        (0.25, None)
    """

    step: int
    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    train_acc: float | None = None
    val_acc: float | None = None
    ece_train: float | None = None
    ece_val: float | None = None

    @property
    def gap_loss(self) -> float | None:
        """``val_loss - train_loss``."""
        return _minus(self.val_loss, self.train_loss)

    @property
    def gap_acc(self) -> float | None:
        """``train_acc - val_acc`` (positive when the model does better on what it trained on)."""
        return _minus(self.train_acc, self.val_acc)

    @property
    def ece_gap(self) -> float | None:
        """``ece_val - ece_train`` (over-confidence on unseen data)."""
        return _minus(self.ece_val, self.ece_train)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
