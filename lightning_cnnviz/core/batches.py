"""Collated batches: their inputs, class labels and size, read where a data item's are.

Nothing here knows about Lightning. A batch is what the loader's collate made of items
(``items.py`` reads one item): a tuple, list or dict of tensors, or a bare tensor.

Example::

    >>> import torch
    >>> batch = (torch.zeros(8, 1, 4, 4), torch.arange(8))
    >>> tuple(batch_inputs(batch).shape), batch_labels(batch)[:3].tolist(), batch_size(batch)
    ((8, 1, 4, 4), [0, 1, 2], 8)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from lightning_cnnviz.core.item_fields import LABEL_KEYS, keyed, named_fields
from lightning_cnnviz.core.items import integer_dtype, parts

__all__ = ["batch_inputs", "batch_labels", "batch_size"]


def batch_labels(batch: Any, label_key: Any = None) -> Tensor | None:
    """The class labels of a collated batch, ``(B,)`` integers, where ``split_sample`` finds them.

    ``None`` when the batch holds no such labels (a bare tensor, soft or one-hot targets).

    Example::

        >>> import torch
        >>> batch_labels((torch.zeros(2, 1, 4, 4), torch.tensor([3, 1]))).tolist()
        [3, 1]
        >>> batch_labels({"image": torch.zeros(2, 3), "cls": torch.tensor([0, 2])}, "cls").tolist()
        [0, 2]
        >>> batch_labels(torch.zeros(2, 1, 4, 4)) is None
        True
    """
    fields = named_fields(batch)
    if fields is not None and not (isinstance(label_key, int) and isinstance(batch, tuple)):
        y = parts(batch, label_key)[1]  # read by name (a namedtuple or dataclass batch)
    elif isinstance(batch, Mapping):
        usual = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        y = keyed(batch, label_key) if label_key is not None else usual
    elif isinstance(batch, Sequence) and not isinstance(batch, str) and batch:
        at = label_key if isinstance(label_key, int) else 1
        y = batch[at] if len(batch) > at else None
    else:
        y = None
    if not isinstance(y, Tensor) or y.dim() != 1:
        return None
    return y if integer_dtype(y) else None


def batch_inputs(batch: Any) -> Tensor | None:
    """The input tensor of a collated batch, where ``split_sample`` finds an item's.

    Example::

        >>> import torch
        >>> batch_inputs((torch.zeros(2, 1, 4, 4), torch.tensor([3, 1]))).shape
        torch.Size([2, 1, 4, 4])
        >>> batch_inputs("text") is None
        True
    """
    x = parts(batch)[0]
    return x if isinstance(x, Tensor) else None


def batch_size(batch: Any) -> int | None:
    """Samples in a collated batch: the first axis of its first tensor (``None``: none found).

    Example::

        >>> import torch
        >>> batch_size((torch.zeros(8, 1, 4, 4), torch.tensor([3, 1])))
        8
        >>> batch_size({"image": torch.zeros(5, 3)}), batch_size("text")
        (5, None)
    """
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, str) or not isinstance(batch, Sequence):
        return None
    return next((n for n in map(batch_size, batch) if n is not None), None)
