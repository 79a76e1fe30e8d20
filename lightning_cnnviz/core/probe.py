"""The fixed probe set: a few class-balanced samples drawn by index, with our own generator.

The probe is drawn once from a dataset (never from the user's DataLoader:
iterating one draws a seed from the global RNG and would change training),
kept on the CPU, and moved to the model's device when used. Its indices are
what a monitor saves in ``state_dict``, so a resumed run shows the same images.
Items are read through ``core.items`` (the global random generators left as they were;
an iterable dataset through its first items).

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

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_cnnviz.core.dataset_labels import dataset_labels
from lightning_cnnviz.core.items import parts, split_sample
from lightning_cnnviz.core.probe_sizes import in_turns, of_shape, say_classes_left
from lightning_cnnviz.core.random_state import rng_untouched
from lightning_cnnviz.core.say import say
from lightning_cnnviz.core.targets import target_words

__all__ = [
    "ABSENT",
    "Probe",
    "draw_probe",
    "generator_for",
    "labels_in_order",
    "present",
    "probe_from_indices",
]

# One seed scheme: each stream of random draws gets its own offset from the monitor's
# `seed`. Every monitor draws its probe from the same "probe/<split>" stream, so all
# views show the same images; other draws (pools, point sets) get streams of their own.
_STREAMS = {
    "probe/val": 0,
    "probe/train": 7919,
    "gradcam/misclassified": 104729,
    "embeddings/points": 130363,
    "repeats/train": 155921,
}


def generator_for(seed: int, stream: str) -> torch.Generator:
    """A fresh CPU generator for one named stream of draws (never the global RNG).

    Example::

        >>> a = torch.rand(2, generator=generator_for(0, "probe/val"))
        >>> b = torch.rand(2, generator=generator_for(0, "probe/train"))
        >>> bool((a != b).all())
        True
    """
    return torch.Generator().manual_seed(seed + _STREAMS[stream])


@dataclass
class Probe:
    """Probe samples: ``images`` (N, C, ...) on the CPU, ``labels`` (N,) or ``None``.

    ``target``: without labels, what the items' targets are instead, in words
    (``targets.target_words``: "multi-hot vectors (multi-label)", ...; "" if none);
    ``targets``: those targets stacked, where they are tensors of one shape of at most
    ``KEPT_TARGETS`` elements in all (class maps, masks, multi-hot vectors), else ``None``.
    """

    indices: list[int]
    images: Tensor
    labels: Tensor | None
    target: str = ""
    targets: Tensor | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Tensor:
        """The images on ``device`` (and in ``dtype`` if given), ready for a probe pass."""
        return self.images.to(device=device, dtype=dtype or self.images.dtype, non_blocking=True)


def probe_from_indices(dataset: Any, indices: Sequence[int], label_key: Any = None) -> Probe:
    """Load the samples at ``indices`` (e.g. restored from a checkpoint) into a probe.

    Items that are ``None`` (a dataset's unreadable ones, see ``present``) are left out,
    and so are images of another size than most: a probe is one batch, and a dataset of
    images at their own sizes (bucketed or padded by the loader) has no one size.

    Example::

        >>> sizes = [torch.zeros(1, s, s) for s in (20, 28, 28, 24, 28)]
        >>> probe = probe_from_indices(sizes, range(5))
        >>> probe.indices, tuple(probe.images.shape)
        ([1, 2, 4], (3, 1, 28, 28))
    """
    with rng_untouched(dataset):
        read = [(int(i), dataset[i]) for i in indices]
    read = [(i, r, split_sample(r, label_key)) for i, r in read if r is not None]
    shapes = [tuple(torch.as_tensor(x).shape) for _, _, (x, _) in read]
    if shapes:  # the commonest shape, the first seen among equals
        common = max(shapes, key=lambda shape: (shapes.count(shape), -shapes.index(shape)))
        read = [row for row, shape in zip(read, shapes, strict=True) if shape == common]
    indices, raw = [i for i, _, _ in read], [r for _, r, _ in read]
    xs, ys = zip(*(item for _, _, item in read), strict=True) if read else ((), ())
    if not xs:
        raise ValueError("a probe needs at least one sample")
    images = torch.stack([torch.as_tensor(x) for x in xs]).detach().cpu()
    labels = None if any(y is None for y in ys) else torch.tensor(ys, dtype=torch.long)
    if labels is not None:
        return Probe(indices, images, labels)
    targets = _stacked([parts(r, label_key)[1] for r in raw])
    return Probe(indices, images, None, target_words(raw, label_key), targets)


KEPT_TARGETS = 1 << 22
"""Elements of a probe's targets kept beside its images: a few hundred maps at 128x128."""


def _stacked(ys: Sequence[Any]) -> Tensor | None:
    """Targets that are tensors of one shape, stacked on the CPU (``None``: not so, or too many)."""
    ys = [torch.as_tensor(y) if isinstance(y, np.ndarray) else y for y in ys]
    if not ys or not all(isinstance(y, Tensor) and y.dim() >= 1 for y in ys):
        return None
    if len({tuple(y.shape) for y in ys}) > 1 or len(ys) * ys[0].numel() > KEPT_TARGETS:
        return None
    return torch.stack([y.detach().cpu() for y in ys])


def labels_in_order(
    dataset: Any, order: Tensor, pool: int, label_key: Any = None, least: int = 0
) -> tuple[Tensor, Tensor | None]:
    """Indices and class labels of a dataset's items in ``order``, without loading where it can.

    All of ``order`` where the dataset exposes its labels (``dataset_labels.py``), else
    its first ``pool`` items, read with the random generators untouched, once for every
    monitor (a dataset of image files decodes each item it reads), and no more than
    ``LABEL_SECONDS`` of reading per dataset once ``least`` are read: at 5 ms an item, a
    dataset without ``targets`` cost 24 s of reads at the start of a 3 s fit (setups
    hunt 25). Labels ``None`` where an item carries no class label.

    Example::

        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.zeros(4, 1), torch.tensor([3, 1, 2, 0]))
        >>> labels_in_order(data, torch.tensor([2, 0, 1, 3]), pool=2)[1].tolist()
        [2, 3, 1, 0]
    """
    labels = dataset_labels(dataset)
    if labels is not None:
        return order, labels[order]
    order = order[:pool]
    try:  # read once for every monitor: an item may be a file to decode and augment
        reads = _labels_read.setdefault(dataset, {}).setdefault(label_key, _Reads())
    except TypeError:  # unhashable (an iterable dataset's first items): read each time
        reads = _Reads()
    known, start, read = reads.labels, time.perf_counter(), len(order)
    with rng_untouched(dataset):
        for n, i in enumerate(order.tolist()):
            if i in known:
                continue
            if n >= least and reads.seconds + time.perf_counter() - start > LABEL_SECONDS:
                read = n
                break
            known[i] = _label(dataset[i], label_key)
    reads.seconds += time.perf_counter() - start
    if read < len(order) and not reads.told:
        reads.told = True
        say(
            f"lightning-cnnviz: reading {type(dataset).__name__} items for their class labels "
            f"took over {LABEL_SECONDS:g} s ({read} read): the probes are drawn from those. "
            "Give the dataset a `targets` attribute (one class index per item, as torchvision's "
            "datasets have) to draw class-balanced probes without reading items."
        )
    order = order[:read]
    found = [known[int(i)] for i in order]
    return order, None if any(y is None for y in found) else torch.tensor(found, dtype=torch.long)


LABEL_SECONDS = 1.0
"""Reading items for their labels stops past this many seconds per dataset (``least`` read)."""


@dataclass
class _Reads:
    """The labels read from one dataset's items (by index), the time it took, the note said."""

    labels: dict[int, int | None] = field(default_factory=dict)
    seconds: float = 0.0
    told: bool = False


def _label(item: Any, label_key: Any) -> int | None:
    """An item's class label; ``ABSENT`` for an item that is ``None`` (see ``present``)."""
    return ABSENT if item is None else split_sample(item, label_key)[1]


ABSENT = -1  # the label of a missing item: a negative label is no class, never drawn


def present(dataset: Any, order: Sequence[int], count: int) -> list[int]:
    """The first ``count`` indices of ``order`` whose items are not ``None``.

    A dataset may return ``None`` for an item it cannot read (a corrupt file) for a
    ``collate_fn`` that drops them: held out (setups hunt 22), every probe-based monitor
    stepped aside on "cannot find the input tensor in a dataset item of type NoneType".

    Example::

        >>> present([None, 1, 2, None, 4], [0, 1, 2, 3, 4], 3)
        [1, 2, 4]
    """
    found: list[int] = []
    with rng_untouched(dataset):
        for i in order:
            if len(found) == count:
                break
            if dataset[int(i)] is not None:
                found.append(int(i))
    return found


# what was read from a dataset's items, by label key (no `targets` to read)
_labels_read: weakref.WeakKeyDictionary[Any, dict[Any, _Reads]] = weakref.WeakKeyDictionary()


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
    dict item). Images at their own sizes: the commonest size among those drawn, each
    class's turn read again for images of it (``probe_sizes.py``).

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
        return probe_from_indices(dataset, present(dataset, order, num_samples), label_key)
    candidates, labels_of = labels_in_order(
        dataset, order, max(num_samples, label_pool), label_key, least=num_samples
    )
    if labels_of is None:
        return probe_from_indices(dataset, present(dataset, order, num_samples), label_key)
    # a negative label (PyTorch's `ignore_index`, -100) marks an item without a class
    by_class = {int(c): candidates[labels_of == c].tolist() for c in labels_of.unique() if c >= 0}
    if not by_class:
        return probe_from_indices(dataset, present(dataset, order, num_samples), label_key)
    num_samples = min(num_samples, sum(map(len, by_class.values())))
    picked = in_turns(by_class, num_samples)
    probe = probe_from_indices(dataset, picked, label_key)
    if len(probe) < len(picked):  # images at their own sizes: the commonest size's, in turns
        shape = tuple(probe.images.shape[1:])  # each class read for all: others may have none
        with rng_untouched(dataset):
            fits = {c: of_shape(dataset, q, shape, num_samples, label_key)
                    for c, q in by_class.items()}  # fmt: skip
        probe = probe_from_indices(dataset, in_turns(fits, num_samples), label_key)
        held = set(probe.labels.tolist()) if probe.labels is not None else set(by_class)
        say_classes_left(dataset, held, sorted(by_class), tuple(probe.images.shape[2:]))
    return probe
