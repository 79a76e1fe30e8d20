"""The class labels a dataset exposes without loading its items.

Nothing here knows about Lightning. torchvision's classification datasets keep one class
index per item in ``targets`` (or ``labels``); a ``TensorDataset(x, y)`` holds them as its
second tensor; a ``Subset`` chain picks from them. Reading them spares the probes a pass
over the items to draw a class-balanced probe. Anything else under those names (mask
paths, class names, a class list, a multi-label table) is not read as labels.

Example::

    >>> import torch
    >>> from torch.utils.data import Subset, TensorDataset
    >>> data = TensorDataset(torch.zeros(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    >>> dataset_labels(Subset(data, [1, 2, 5]))
    tensor([1, 2, 2])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core.collated import Unbatched, View
from lightning_cnnviz.core.items import integer_dtype

__all__ = ["dataset_labels"]


def dataset_labels(dataset: Any) -> Tensor | None:
    """All labels of a dataset without loading its items, where it exposes them.

    Follows ``torch.utils.data.Subset`` chains down to a dataset with ``targets``
    or ``labels`` (torchvision datasets have them) or a ``TensorDataset(x, y)``;
    ``None`` otherwise. The package's own views (``collated.View``: item for item the
    dataset's, whose attributes they forward) are stepped through, their forwarded
    ``indices`` not taken (setups hunt 36: a ``random_split`` read through a collate had
    its indices applied twice, and every probe monitor failed).
    """
    indices = None
    while True:
        if isinstance(dataset, Unbatched):
            return None  # items are rows of the dataset's batches: no label per item
        if isinstance(dataset, View):
            dataset = dataset.dataset
            continue
        for attr in ("targets", "labels"):
            labels = _per_item(dataset, getattr(dataset, attr, None))
            if labels is not None:
                return labels if indices is None else labels[indices]
        tensors = getattr(dataset, "tensors", None)  # TensorDataset(x, y)
        if isinstance(tensors, tuple) and len(tensors) > 1 and tensors[1].dim() == 1:
            if not integer_dtype(tensors[1]):
                return None
            labels = tensors[1].long()
            return labels if indices is None else labels[indices]
        inner, sub = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
        if inner is None or sub is None:
            return None
        sub = torch.as_tensor(list(sub)).long()
        indices = sub if indices is None else sub[indices]
        dataset = inner


def _per_item(dataset: Any, labels: Any) -> Tensor | None:
    """``labels`` as one integer class index per item of ``dataset``, else ``None``.

    Not every ``targets`` is that: torchvision's ``VOCSegmentation`` and ``Cityscapes``
    keep mask paths there, a CSV-backed set class names, a repeating set one label per
    underlying item, a multi-label set an (N, K) table; regression targets are floats.
    Then the items themselves are read.

    Example::

        >>> class Named(list):
        ...     targets = ["cat", "dog"]
        >>> _per_item([0, 1], [1, 0]), _per_item(Named([0, 1]), Named.targets)
        (tensor([1, 0]), None)
        >>> _per_item([0, 1, 2], [1, 0]), _per_item([0, 1], [[0, 1], [1, 1]])
        (None, None)
    """
    try:
        if labels is None or len(labels) == 0 or len(labels) != len(dataset):
            return None
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):  # strings, paths, ragged lists, no len
        return None
    return labels.long() if labels.dim() == 1 and integer_dtype(labels) else None
