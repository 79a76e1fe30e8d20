"""What a dataset's targets are when they are no class index, in words.

Nothing here knows about Lightning. The monitors that need class labels say what they
found instead (regression values, multi-hot vectors, segmentation maps, class indices
stored as floats), so that the user sees why a check did not run and what to change.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_cnnviz.core.items import integer_dtype, parts

__all__ = ["real_words", "target_words"]


def target_words(samples: Sequence[Any], label_key: Any = None) -> str:
    """What the items' targets are when they are no class index, in words ("" otherwise).

    Read over all of ``samples``: one item of a multi-label set may carry one label.

    Example::

        >>> x = torch.zeros(1, 2, 2)
        >>> target_words([(x, torch.tensor([0.0, 1.0, 1.0])), (x, torch.tensor([0.0, 1.0, 0.0]))])
        'multi-hot vectors (multi-label)'
        >>> target_words([(x, 2.5), (x, 1.0)]), target_words([(x, 3), (x, 1)])
        ('real numbers (regression)', '')
        >>> import numpy as np
        >>> target_words([(x, np.zeros((2, 2), np.uint8))] * 2)  # a NumPy mask
        'per-pixel class maps (segmentation)'
    """
    ys = [parts(sample, label_key)[1] for sample in samples]
    ys = [torch.as_tensor(y) if isinstance(y, np.ndarray) else y for y in ys]  # as collated
    if not ys or any(y is None or isinstance(y, numbers.Integral) for y in ys):
        return ""  # class indices (or bools), or no target at all
    if all(isinstance(y, numbers.Real) for y in ys):
        return real_words(torch.tensor([float(y) for y in ys]))  # type: ignore[arg-type]
    if not all(isinstance(y, Tensor) for y in ys):
        return f"{type(ys[0]).__name__} values"
    shapes = {tuple(y.shape) for y in ys}
    if len(shapes) > 1:
        return f"tensors of shapes {sorted(shapes)[:3]}"
    t = torch.stack(ys)
    if t[0].numel() == 1:
        binary = bool(((t == 0) | (t == 1)).all())
        return "" if integer_dtype(t) or binary else real_words(t.flatten().double())
    if t.dim() >= 3 and integer_dtype(t):
        return "per-pixel class maps (segmentation)"
    rows = t.flatten(1).double()
    one = bool((rows.sum(1) - 1).abs().max() < 1e-3)
    if t.dim() == 2 and bool(((rows == 0) | (rows == 1)).all()):
        return "one-hot vectors" if one else "multi-hot vectors (multi-label)"
    if t.dim() == 2 and one and bool((rows >= 0).all()):
        return "class distributions (soft labels)"
    return f"tensors of shape {tuple(t.shape[1:])}"


def real_words(values: Tensor) -> str:
    """Real-number targets in words: integer-valued ones may be class indices stored as floats.

    Example::

        >>> real_words(torch.tensor([3.0, 0.0, 7.0]))[:45]
        'whole numbers stored as floats (3.0, 0.0, 7.0'
        >>> real_words(torch.tensor([2.5, 1.0]))
        'real numbers (regression)'
    """
    if not bool((values == values.round()).all()) or bool((values < 0).any()):
        return "real numbers (regression)"
    shown = ", ".join(f"{v:.1f}" for v in values[:3].tolist())
    return (
        f"whole numbers stored as floats ({shown}: class indices? store them as integers, "
        "`torch.long`, to have them read as classes)"
    )
