"""Val labels changed mid-run: the first val batch's images as before, their labels not.

Nothing here knows about Lightning. The monitor reads the first batch of each validation
(``StepInputs._read_batch``): a fingerprint of each image and its class label, kept on the
batch's device until the evaluation compares them with the first validation's
(``changed_share``). The same images with other labels: the val labels changed (a label
map, a target transform, a dataset re-made mid-run), which the model's own val probe,
labelled as first read, does not show, so the logged val accuracy parts from it (hunt 93:
val labels shuffled from the third validation, 62% -> 26%, told "`validation_step` scores
other weights ... or computes the metric wrong").

Example::

    >>> import torch
    >>> images, labels = torch.rand(8, 1, 4, 4), torch.arange(8) % 4
    >>> first = label_read(images, labels)
    >>> changed_share(first, label_read(images, (labels + 1) % 4))
    1.0
    >>> changed_share(first, label_read(images, labels)), changed_share(first, label_read(
    ...     torch.rand(8, 1, 4, 4), (labels + 1) % 4)) is None
    (0.0, True)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lightning_cnnviz.overfitting.words import num

__all__ = ["CHANGED", "REMEDY", "LabelRead", "changed_share", "changed_text", "label_read"]

CHANGED = 0.1  # this share of the first val batch's labels other than at the first validation
REMEDY = (
    "**Find what changes the val labels mid-run**: a label map or target transform set "
    "during training, a datamodule's `setup` or a callback re-making the val set; compare "
    "`y` of the first val batch at two validations."
)


class LabelRead(NamedTuple):
    """A batch's per-image fingerprint ``(N, 2)`` (sum and sum of squares) and labels ``(N,)``."""

    prints: Tensor
    labels: Tensor


def label_read(images: Tensor, labels: Tensor | None) -> LabelRead | None:
    """The fingerprints and labels of a batch (on its device), ``None`` without class labels."""
    if labels is None or labels.shape != (len(images),):
        return None
    x = images.detach().flatten(1).float()  # float32: every device has it
    return LabelRead(torch.stack([x.sum(1), (x * x).sum(1)], 1), labels.detach().clone())


def changed_share(first: LabelRead | None, now: LabelRead | None) -> float | None:
    """The share of labels that differ where both reads hold the same images, else ``None``."""
    if first is None or now is None or first.prints.shape != now.prints.shape:
        return None
    # the same images give the same sums up to a reduction's order; others differ far more
    if not torch.allclose(first.prints, now.prints.to(first.prints), rtol=1e-4, atol=1e-6):
        return None  # other images (a shuffled val loader): nothing to compare
    return float((first.labels != now.labels.to(first.labels)).double().mean())


def changed_text(f: dict, since: str) -> str:
    """``val_metrics_differ``'s words where the val labels changed (``labels_changed``)."""
    return (
        f"The val labels changed: the first val batch holds the images it held at the first "
        f"validation, and {num(f['labels_changed'], True)} of their labels differ since "
        f"{since}. The logged val accuracy ({num(f['logged_acc'], True)}) scores the new "
        f"labels; the model scores {num(f['probe_acc'], True)} on the val probe, labelled as "
        "first read. A label map, a target transform or a val set re-made mid-run (a "
        "datamodule's `setup` run again, a callback that swaps it) changed them; every val "
        "curve since reads that."
    )
