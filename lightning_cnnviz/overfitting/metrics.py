"""The figures of one validation: logged values, calibration, per-class accuracy, confusion.

Nothing here knows about Lightning. ``pick_metric`` reads a value the module
logged, ``expected_calibration_error`` and ``per_class_accuracy`` measure the
probes' logits, ``figures`` moves all of it to the host in one transfer (an
``evaluation.Evaluation`` holds the result for the rules); ``interval_loss.py`` keeps
the training loss between evaluations on the device.

Example::

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]])
    >>> labels = torch.tensor([0, 1, 1, 0])
    >>> round(float(expected_calibration_error(logits, labels)), 4)
    0.4908
    >>> per_class_accuracy(logits, labels).tolist()
    [0.5, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core.logits import as_logits
from lightning_cnnviz.overfitting.softmax_match import candidates

__all__ = [
    "confusion_counts",
    "discordant_shares",
    "expected_calibration_error",
    "figures",
    "outside_share",
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
    count = confidence.new_zeros(n_bins).index_add_(0, bins, torch.ones_like(correct))
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
    total = correct.new_zeros(num_classes).index_add_(0, labels, torch.ones_like(correct))
    hits = torch.zeros_like(total).index_add_(0, labels, correct)
    return torch.where(total > 0, hits / total.clamp_min(1), torch.full_like(total, math.nan))


def pick_metric(metrics: Mapping[str, Any], key: str, epoch_level: bool) -> Tensor | None:
    """A logged value as a 0-dim float tensor, or ``None``.

    ``self.log(key, on_step=True, on_epoch=True)`` logs ``key_step`` and ``key_epoch``;
    ``epoch_level`` prefers ``key_epoch`` (current once the training epoch ended),
    else the latest value (``key``, ``key_step``). With several val loaders Lightning
    logs ``key/dataloader_idx_0``, ``_1``, ...: the first loader's is read (the one the
    val probe is drawn from).

    Example::

        >>> float(pick_metric({"a": 1.0, "a_step": 1.0, "a_epoch": 2.0}, "a", epoch_level=True))
        2.0
        >>> float(pick_metric({"a": 1.0, "a_epoch": 2.0}, "a", epoch_level=False))
        1.0
        >>> float(pick_metric({"v/dataloader_idx_1": 3.0, "v/dataloader_idx_0": 4.0}, "v", True))
        4.0
    """
    order = ("_epoch", "", "_step") if epoch_level else ("", "_step", "_epoch")
    # several val loaders: Lightning suffixes each value; the first loader's is the probe's
    names = [key + s for s in order] + [f"{key}{s}/dataloader_idx_0" for s in order]
    value = next((metrics[name] for name in names if name in metrics), None)
    return None if value is None else torch.as_tensor(value).detach().float().reshape(())


def _probe_figures(out: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Mean top confidence, accuracy and cross-entropy of one probe pass (0-dim each)."""
    out, labels = out.float(), labels.to(out.device).long()
    confidence, predicted = torch.softmax(out, dim=1).max(dim=1)
    return {
        "conf": confidence.mean(),
        "acc": (predicted == labels).float().mean(),
        "loss": torch.nn.functional.cross_entropy(out, labels),
    }


def discordant_shares(eval_out: Tensor, bn_out: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Shares of the probe right with batch statistics only, and in eval mode only.

    The two passes see the same images, so their accuracies differ by these discordant
    pairs alone (McNemar): the gap's standard error comes from them, far smaller than
    that of two independent accuracies.
    """
    labels = labels.to(eval_out.device).long()
    right_eval = eval_out.float().argmax(dim=1) == labels
    right_bn = bn_out.float().argmax(dim=1) == labels
    return {
        "bn_only": (right_bn & ~right_eval).float().mean(),
        "eval_only": (right_eval & ~right_bn).float().mean(),
    }


# Classes beyond this: no per-class figures or confusion counts (a (K, K) matrix; 10,000
# classes made each evaluation 20 s; a probe of 128 images fills no class's share anyway)
PER_CLASS_MAX = 2048


def figures(
    logged: Mapping[str, Tensor | None],
    logits: Mapping[str, Tensor | None],
    labels: Mapping[str, Tensor | None],
) -> tuple[dict[str, float], list[float], list[list[float]] | None]:
    """Logged values, probe figures, per-class val accuracy and confusion counts, on the host.

    For each probe pass ``split`` (``"val"``, ``"train"``; ``"bn"`` is the val probe with
    batch statistics) it adds ``ece_{split}``, ``conf_{split}`` (mean top softmax
    probability), ``probe_acc_{split}`` and ``probe_loss_{split}`` (cross-entropy), plus
    ``classes`` (the logits' width), ``label_classes`` (the val probe's largest label
    + 1) and, with both val passes, ``bn_only`` / ``eval_only``
    (shares of the val probe right in one of them only), and the val probe's loss
    candidates (``softmax_match.candidates``); per class only up to ``PER_CLASS_MAX`` classes.
    Outputs that are probabilities (a model that ends in a softmax) are read as their
    logarithms (``core.logits.as_logits``). Everything is reduced where the logits live
    and moved to the host in one transfer. A ``None`` entry (not logged, no usable logits)
    is left out.

    Example::

        >>> logits = {"val": torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "train": None}
        >>> host, per_class, confusion = figures({"val_loss": torch.tensor(0.5)}, logits,
        ...                                      {"val": torch.tensor([0, 0]), "train": None})
        >>> sorted(host)[:5]
        ['classes', 'conf_val', 'ece_val', 'label_classes', 'probe_acc_val']
        >>> sorted(host)[5:]  # doctest: +NORMALIZE_WHITESPACE
        ['probe_ce_probs_se_val', 'probe_ce_probs_val', 'probe_loss_se_val', 'probe_loss_val',
         'probe_nll_raw_val', 'probe_outside_val', 'probe_simplex_val', 'val_loss']
        >>> per_class, confusion
        ([0.5, nan], [[1.0, 1.0], [0.0, 0.0]])
    """
    values = {name: value for name, value in logged.items() if value is not None}
    val_labels = labels.get("val")
    raw = logits.get("val")
    if raw is not None and val_labels is not None:
        values.update(candidates(raw, val_labels))  # from the outputs as the model gave them
    logits = {s: None if out is None else as_logits(out) for s, out in logits.items()}
    for split, out in logits.items():
        truth = val_labels if split == "bn" else labels.get(split)
        if out is None or truth is None:
            continue
        values[f"ece_{split}"] = expected_calibration_error(out, truth)
        for name, value in _probe_figures(out, truth).items():
            values[f"{'probe_' if name != 'conf' else ''}{name}_{split}"] = value
    device = next((v.device for v in values.values()), torch.device("cpu"))
    val = logits.get("val")
    if val is not None and logits.get("bn") is not None and val_labels is not None:
        values.update(discordant_shares(val, logits["bn"], val_labels))  # type: ignore[arg-type]
    if val is not None and val_labels is not None:
        values["classes"] = torch.tensor(float(val.shape[1]), device=device)
        values["label_classes"] = torch.tensor(float(int(val_labels.max()) + 1), device=device)
        values["probe_outside_val"] = outside_share(val, val_labels)
    # the trailing zero keeps the stack non-empty when nothing was logged
    parts = [
        torch.stack([*(v.to(device) for v in values.values()), torch.zeros((), device=device)])
    ]
    per_class = val is not None and val_labels is not None and val.shape[1] <= PER_CLASS_MAX
    if per_class:
        parts.append(per_class_accuracy(val, val_labels).to(device))  # type: ignore[arg-type]
        parts.append(confusion_counts(val, val_labels).flatten().to(device))  # type: ignore[arg-type]
    flat = torch.cat(parts).tolist()
    host = dict(zip(values, flat, strict=False))
    if not per_class:
        return host, [], None
    k, n = val.shape[1], len(values) + 1
    matrix = flat[n + k :]
    return host, flat[n : n + k], [matrix[i * k : (i + 1) * k] for i in range(k)]


def outside_share(logits: Tensor, labels: Tensor) -> Tensor:
    """The share of rows whose largest output is at an index past every label (0-dim).

    Counted only where the outputs are at least twice as wide as the labels' classes
    (``max(labels) + 1``; else 0): a 64-wide embedding graded against labels 0-9 puts
    its largest output past 9 on most images, a classifier that learns its labels on
    none.

    Example::

        >>> round(outside_share(torch.eye(8)[[0, 5, 7]], torch.tensor([0, 1, 2])).item(), 3)
        0.667
        >>> outside_share(torch.eye(4)[[3, 3]], torch.tensor([0, 2])).item()  # 4 < 2 x 3
        0.0
    """
    classes = int(labels.max()) + 1  # the probe's labels live on the host
    if logits.shape[1] < 2 * classes:
        return logits.new_zeros((), dtype=torch.float32)
    return (logits.argmax(1) >= classes).float().mean()


def confusion_counts(logits: Tensor, labels: Tensor) -> Tensor:
    """``(K, K)`` float32 counts: row = true class, column = predicted class.

    Example::

        >>> confusion_counts(torch.eye(2)[[0, 0, 1]], torch.tensor([0, 1, 1])).tolist()
        [[1.0, 0.0], [1.0, 1.0]]
    """
    k = logits.shape[1]
    labels = labels.to(logits.device).long()
    index = labels * k + logits.argmax(dim=1)
    ones = torch.ones_like(index, dtype=torch.float32)
    return ones.new_zeros(k * k).index_add_(0, index, ones).view(k, k)
