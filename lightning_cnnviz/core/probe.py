"""The fixed probe set: a few class-balanced samples drawn by index, with our own generator.

The probe is drawn once from a dataset (never from the user's DataLoader:
iterating one draws a seed from the global RNG and would change training),
kept on the CPU, and moved to the model's device when used. Its indices are
what a monitor saves in ``state_dict``, so a resumed run shows the same images.
Reading items leaves the global random generators as they were (``rng_untouched``):
a training set's random augmentation draws from them. An iterable dataset is drawn
from its first ``ITERABLE_HEAD`` items (``iterable_head``).

Example::

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(40, 1, 4, 4), torch.arange(40) % 4)
    >>> probe = draw_probe(data, 8, torch.Generator().manual_seed(0))
    >>> probe.labels.tolist()
    [0, 1, 2, 3, 0, 1, 2, 3]
    >>> again = probe_from_indices(data, probe.indices)
    >>> torch.equal(again.images, probe.images)
    True
"""

from __future__ import annotations

import contextlib
import itertools
import numbers
import random
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

__all__ = [
    "LABEL_KEYS",
    "Probe",
    "batch_labels",
    "batch_size",
    "dataset_labels",
    "draw_probe",
    "find_dataset",
    "generator_for",
    "has_val_data",
    "iterable_head",
    "probe_from_indices",
    "read_item",
    "rng_untouched",
    "split_sample",
]

# One seed scheme: each stream of random draws gets its own offset from the monitor's
# `seed`. Every monitor draws its probe from the same "probe/<split>" stream, so all
# views show the same images; other draws (pools, point sets) get streams of their own.
_STREAMS = {
    "probe/val": 0,
    "probe/train": 7919,
    "gradcam/misclassified": 104729,
    "embeddings/points": 130363,
}

_IMAGE_KEYS = ("image", "images", "img", "input", "inputs", "x", "pixel_values")
_LABEL_KEYS = ("label", "labels", "target", "targets", "y", "class")
LABEL_KEYS = _LABEL_KEYS  # the label keys known without `label_key`


def generator_for(seed: int, stream: str) -> torch.Generator:
    """A fresh CPU generator for one named stream of draws (never the global RNG).

    Example::

        >>> a = torch.rand(2, generator=generator_for(0, "probe/val"))
        >>> b = torch.rand(2, generator=generator_for(0, "probe/train"))
        >>> bool((a != b).all())
        True
    """
    return torch.Generator().manual_seed(seed + _STREAMS[stream])


# An iterable dataset (no ``len``, no ``[i]``) stands in through its first items, read
# once per dataset: enough for class-balanced probes, bounded in memory.
ITERABLE_HEAD = 256
_heads: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def iterable_head(dataset: Any) -> list[Any]:
    """The first ``ITERABLE_HEAD`` items of an iterable dataset, read once (RNG untouched).

    Example::

        >>> class Stream(torch.utils.data.IterableDataset):
        ...     def __iter__(self):
        ...         return iter([(torch.zeros(1, 2, 2), i % 3) for i in range(1000)])
        >>> head = iterable_head(Stream())
        >>> len(head), head[4][1]
        (256, 1)
    """
    try:
        head = _heads.get(dataset)
    except TypeError:  # unhashable: read again each time
        head = None
    if head is None:
        with rng_untouched():
            head = list(itertools.islice(iter(dataset), ITERABLE_HEAD))
        with contextlib.suppress(TypeError):
            _heads[dataset] = head
    return head


def _dataset_of(loaders: Any) -> Any:
    if isinstance(loaders, DataLoader):
        data = loaders.dataset
        return iterable_head(data) if isinstance(data, IterableDataset) else data
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, list | tuple) and loaders:
        return _dataset_of(loaders[0])
    return None


def _defined_loaders(loop: Any) -> Any:
    """The loaders a fit loop will use, before it has loaded them.

    Lightning keeps them behind the private ``_data_source`` until the loop starts
    (e.g. validation before the first validation run); no public API gives them.
    """
    source = loop._data_source
    return source.dataloader() if source.instance is not None and source.is_defined() else None


def _val_dataset(trainer: Any) -> Any:
    dataset = _dataset_of(trainer.val_dataloaders)
    if dataset is None:
        dataset = _dataset_of(_defined_loaders(trainer.fit_loop.epoch_loop.val_loop))
    return dataset


def has_val_data(trainer: Any) -> bool:
    """Whether the run has validation data of its own (``find_dataset`` falls back to train)."""
    return _val_dataset(trainer) is not None


def find_dataset(trainer: Any, split: str) -> Any:
    """The dataset behind the run's ``"train"`` or ``"val"`` loader, without iterating it.

    Falls back from val to train when the run has no validation data.
    """
    if split == "val" and (dataset := _val_dataset(trainer)) is not None:
        return dataset
    dataset = _dataset_of(trainer.train_dataloader)
    if dataset is None:
        dataset = _dataset_of(_defined_loaders(trainer.fit_loop))
    if dataset is None:
        raise RuntimeError("cannot find a dataset to draw probe samples from")
    return dataset


@dataclass
class Probe:
    """Probe samples: ``images`` (N, C, ...) on the CPU, ``labels`` (N,) or ``None``."""

    indices: list[int]
    images: Tensor
    labels: Tensor | None

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Tensor:
        """The images on ``device`` (and in ``dtype`` if given), ready for a probe pass."""
        return self.images.to(device=device, dtype=dtype or self.images.dtype, non_blocking=True)


def split_sample(sample: Any, label_key: Any = None) -> tuple[Tensor, int | None]:
    """Split one dataset item into (input tensor, label or None).

    Handles ``(x, y)`` tuples/lists, dicts with usual keys (or ``label_key``) and bare tensors.

    Example::

        >>> split_sample((torch.zeros(1, 2, 2), 3))[1]
        3
        >>> split_sample({"image": torch.zeros(1, 2, 2), "label": torch.tensor(5)})[1]
        5
        >>> split_sample(torch.zeros(1, 2, 2))[1] is None
        True
    """
    if isinstance(sample, Tensor):
        return sample, None
    if isinstance(sample, Mapping):
        x = next((sample[k] for k in _IMAGE_KEYS if k in sample), None)
        if x is None:
            x = next((v for v in sample.values() if isinstance(v, Tensor) and v.dim() >= 2), None)
        keys = (label_key,) if label_key is not None else _LABEL_KEYS
        y = next((sample[k] for k in keys if k in sample), None)
    elif isinstance(sample, Sequence) and sample:
        at = label_key if isinstance(label_key, int) else 1
        x, y = sample[0], (sample[at] if len(sample) > at else None)
    else:
        x, y = None, None
    if not isinstance(x, Tensor):
        raise TypeError(
            "cannot find the input tensor in a dataset item of type "
            f"{type(sample).__name__}; expected a tensor, an (input, label) tuple or a dict "
            f"with one of the keys {_IMAGE_KEYS}"
        )
    if isinstance(y, Tensor):  # a float target (regression, soft labels) is no class
        y = int(y.item()) if y.numel() == 1 and _integer(y) else None
    elif isinstance(y, numbers.Integral) and not isinstance(y, bool):  # NumPy's too
        y = int(y)
    else:
        y = None
    return x, y


def _integer(t: Tensor) -> bool:
    """Whether ``t`` holds class indices: an integer dtype (not float, complex or bool)."""
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def batch_labels(batch: Any, label_key: Any = None) -> Tensor | None:
    """The class labels of a collated batch, ``(B,)`` integers, where ``split_sample`` finds them.

    ``None`` when the batch holds no such labels (a bare tensor, soft or one-hot targets).

    Example::

        >>> batch_labels((torch.zeros(2, 1, 4, 4), torch.tensor([3, 1]))).tolist()
        [3, 1]
        >>> batch_labels({"image": torch.zeros(2, 3), "cls": torch.tensor([0, 2])}, "cls").tolist()
        [0, 2]
        >>> batch_labels(torch.zeros(2, 1, 4, 4)) is None
        True
    """
    if isinstance(batch, Mapping):
        keys = (label_key,) if label_key is not None else _LABEL_KEYS
        y = next((batch[k] for k in keys if k in batch), None)
    elif isinstance(batch, Sequence) and not isinstance(batch, str) and batch:
        at = label_key if isinstance(label_key, int) else 1
        y = batch[at] if len(batch) > at else None
    else:
        y = None
    if not isinstance(y, Tensor) or y.dim() != 1:
        return None
    return y if _integer(y) else None


def batch_size(batch: Any) -> int | None:
    """Samples in a collated batch: the first axis of its first tensor (``None``: none found).

    Example::

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


def dataset_labels(dataset: Any) -> Tensor | None:
    """All labels of a dataset without loading its items, where it exposes them.

    Follows ``torch.utils.data.Subset`` chains down to a dataset with ``targets``
    or ``labels`` (torchvision datasets have them) or a ``TensorDataset(x, y)``;
    ``None`` otherwise.
    """
    indices = None
    while True:
        for attr in ("targets", "labels"):
            labels = getattr(dataset, attr, None)
            if labels is not None and len(labels) > 0:
                labels = torch.as_tensor(labels).reshape(-1)
                if not _integer(labels):
                    return None  # regression targets
                return labels.long() if indices is None else labels.long()[indices]
        tensors = getattr(dataset, "tensors", None)  # TensorDataset(x, y)
        if isinstance(tensors, tuple) and len(tensors) > 1 and tensors[1].dim() == 1:
            if not _integer(tensors[1]):
                return None
            labels = tensors[1].long()
            return labels if indices is None else labels[indices]
        inner, sub = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
        if inner is None or sub is None:
            return None
        sub = torch.as_tensor(list(sub)).long()
        indices = sub if indices is None else sub[indices]
        dataset = inner


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Leave the global random generators (torch's, ``random``'s, NumPy's) as they were.

    Reading a training set's items runs its random augmentation, which draws from these
    generators (torchvision's transforms from torch's, others from ``random`` or NumPy):
    without this, every later draw of the run (shuffling, augmentation, dropout) would
    shift, and the model train differently with the monitors on.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def read_item(dataset: Any, index: int) -> Any:
    """``dataset[index]``, with the global random generators left as they were."""
    with rng_untouched():
        return dataset[index]


def probe_from_indices(dataset: Any, indices: Sequence[int], label_key: Any = None) -> Probe:
    """Load the samples at ``indices`` (e.g. restored from a checkpoint) into a probe."""
    with rng_untouched():
        items = [split_sample(dataset[i], label_key) for i in indices]
    xs, ys = zip(*items, strict=True) if indices else ((), ())
    if not xs:
        raise ValueError("a probe needs at least one sample")
    images = torch.stack([torch.as_tensor(x) for x in xs]).detach().cpu()
    labels = None if any(y is None for y in ys) else torch.tensor(ys, dtype=torch.long)
    return Probe(list(map(int, indices)), images, labels)


def draw_probe(
    dataset: Any,
    num_samples: int,
    generator: torch.Generator,
    *,
    class_balanced: bool = True,
    label_pool: int = 2048,
    label_key: Any = None,
) -> Probe:
    """Draw ``num_samples`` items by index with ``generator``, balanced over classes.

    Classes take turns (0, 1, ..., 9, 0, 1, ...) so that every class appears
    before any repeats. Labels come from ``dataset.targets`` when available,
    else from reading at most ``label_pool`` items (``label_key`` names the label of a
    dict item).

    Raises:
        ValueError: ``num_samples`` exceeds the dataset size.
    """
    size = len(dataset)
    if num_samples > size:
        raise ValueError(
            f"`num_samples` ({num_samples}) is larger than the dataset the probe is drawn "
            f"from ({size} items); pass a smaller `num_samples`"
        )
    order = torch.randperm(size, generator=generator)
    if not class_balanced:
        return probe_from_indices(dataset, order[:num_samples].tolist(), label_key)
    labels = dataset_labels(dataset)
    candidates = order if labels is not None else order[: max(num_samples, label_pool)]
    if labels is None:
        with rng_untouched():
            found = [split_sample(dataset[int(i)], label_key)[1] for i in candidates]
        if any(y is None for y in found):
            return probe_from_indices(dataset, order[:num_samples].tolist(), label_key)
        labels_of = torch.tensor(found, dtype=torch.long)
    else:
        labels_of = labels[candidates]
    by_class = {int(c): candidates[labels_of == c].tolist() for c in labels_of.unique()}
    picked: list[int] = []
    turn = 0
    while len(picked) < num_samples:
        for queue in by_class.values():
            if turn < len(queue) and len(picked) < num_samples:
                picked.append(queue[turn])
        turn += 1
    return probe_from_indices(dataset, picked, label_key)
