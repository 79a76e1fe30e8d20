"""Datasets seen as the model gets them: through the loader's ``collate_fn``, or row by row.

Datasets of PIL images (or dicts of them) whose loader converts them in a ``collate_fn``
(an image processor, ``ToTensor`` applied to the batch) hold no input tensor that
``items.split_sample`` could find. ``collated_view`` puts such a dataset behind a view whose
items are what the model gets: one item collated alone, then taken out of its batch of
one. Datasets whose items already split are returned as they are (a mixing
``collate_fn``, MixUp or CutMix, would blend probe images with each other).
``unbatched_view``: a loader that does not batch (``batch_size=None``) over a dataset of
whole batches, read one sample at a time. ``seen_view``: images stored otherwise than
its convolutions see them, which the model's ``forward`` fixes, seen as they see them:
channels last (``(H, W, C)``, a Keras port whose ``forward`` permutes them:
``channels_last``) or without a channel axis (``(H, W)``, ``forward`` adding it:
``no_channel_axis``).

Example::

    >>> import torch
    >>> items = [([1.0, 2.0], 3), ([4.0, 5.0], 6)]  # lists, no tensors
    >>> collate = lambda batch: (torch.tensor([x for x, _ in batch]).view(-1, 1, 2, 1),
    ...                          torch.tensor([y for _, y in batch]))
    >>> view = collated_view(items, collate)
    >>> x, y = view[1]
    >>> tuple(x.shape), int(y), len(view)
    ((1, 2, 1), 6, 2)
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from lightning_cnnviz.core.items import image_key, parts, read_item, split_sample

__all__ = [
    "CHANNELS_LAST",
    "NO_CHANNEL",
    "Collated",
    "SeenView",
    "Unbatched",
    "channels_last",
    "collated_view",
    "no_channel_axis",
    "seen_batch",
    "seen_view",
    "source_dataset",
    "stored_batch",
    "unbatched_view",
]

# How a dataset stores its images where ``forward`` changes them for its convolutions
CHANNELS_LAST = "channels last"  # (H, W, C): forward permutes them
NO_CHANNEL = "no channel axis"  # (H, W): forward adds the axis


class _View:
    """A view of ``dataset``; its other attributes (``targets``, ``classes``) the dataset's."""

    dataset: Any

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


class Collated(_View):
    """``dataset`` read through ``collate`` one item at a time."""

    def __init__(self, dataset: Any, collate: Callable[[list[Any]], Any]) -> None:
        self.dataset, self.collate = dataset, collate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return _row(self.collate([self.dataset[index]]), 0)  # the batch of one's item


def _cached(cache: weakref.WeakKeyDictionary[Any, Any], dataset: Any, decide: Any) -> Any:
    """``decide(dataset)``, once per dataset (each time for an unhashable one)."""
    try:
        found = cache.get(dataset)
    except TypeError:  # unhashable (a list of an iterable dataset's first items)
        return decide(dataset)
    if found is None:
        found = decide(dataset)
        with contextlib.suppress(TypeError):
            cache[dataset] = found
    return found


_collated: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_unbatched: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def collated_view(dataset: Any, collate: Callable[[list[Any]], Any] | None) -> Any:
    """``dataset``, or a ``Collated`` view of it where only ``collate`` makes its items tensors.

    Decided once per dataset from its first item (read with the random generators
    untouched); a dataset without items, or one that ``collate`` does not help, stays as
    it is (the monitors then say why they cannot read it).
    """
    if collate is None or collate is default_collate or not _has_items(dataset):
        return dataset
    return _cached(_collated, dataset, lambda data: _decide(data, collate))


def _has_items(dataset: Any) -> bool:
    try:
        return len(dataset) > 0
    except TypeError:
        return False


def _decide(dataset: Any, collate: Callable[[list[Any]], Any]) -> Any:
    try:
        raw: Tensor | None = split_sample(read_item(dataset, 0))[0]
    except TypeError:
        raw = None  # not tensors (PIL images): only the collate makes them
    view = Collated(dataset, collate)
    try:
        made = split_sample(read_item(view, 0))[0]
    except Exception:  # the collate needs a real batch, or yields no image either
        return dataset
    if raw is not None and raw.shape == made.shape and raw.dtype == made.dtype:
        return dataset  # tensors as the model gets them: the collate is left to the loader
    return view  # PIL images, or HWC uint8 arrays the collate permutes and scales


class Unbatched(_View):
    """A dataset whose items are whole batches (a loader with ``batch_size=None``).

    Seen one sample at a time: item ``i`` is row ``i % per`` of batch ``i // per``.
    """

    def __init__(self, dataset: Any, per: int, size: int) -> None:
        self.dataset, self.per, self.size = dataset, per, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return _row(self.dataset[index // self.per], index % self.per)


def _row(batch: Any, i: int) -> Any:
    """Row ``i`` of every tensor in a batch, containers kept."""
    if isinstance(batch, Tensor):
        return batch[i] if batch.dim() else batch
    if isinstance(batch, Mapping):
        return {k: _row(v, i) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_row(v, i) for v in batch))
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        rows = [_row(v, i) for v in batch]
        return tuple(rows) if isinstance(batch, tuple) else rows
    return batch


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PICTURE_CHANNELS = (1, 2, 3, 4)  # the channels a picture's last axis may hold (grey to RGBA)


def channels_last(image: Tensor, model: nn.Module) -> bool:
    """Whether ``image``, one item's input, is channels last for ``model``'s convolutions.

    ``(H, W, C)`` (or ``(D, H, W, C)``, up to 4 channels; ``(L, C)`` signals, any) where
    the model's first convolution, of that many spatial dims, takes ``C`` channels and not
    the first axis's size: its ``forward`` permutes the images (held out: a Keras port's
    ``x.permute(0, 3, 1, 2)``; the monitors drew 28 x 3 stripes of its 28 x 28 RGB digits).

    Example::

        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3))
        >>> channels_last(torch.zeros(28, 28, 3), net), channels_last(torch.zeros(3, 28, 28), net)
        (True, False)
    """
    first = next((m for m in model.modules() if isinstance(m, _CONV)), None)
    if first is None or image.dim() != len(first.kernel_size) + 1:
        return False
    taken = first.in_channels  # 0 for a lazy one not yet built
    if image.dim() > 2 and taken not in _PICTURE_CHANNELS:
        return False  # a picture's channels; a signal's (L, C) may hold any number
    return taken > 0 and image.shape[-1] == taken != image.shape[0]


def no_channel_axis(image: Tensor, model: nn.Module) -> bool:
    """Whether ``image``, one item's input, lacks the channel axis ``model``'s convolutions take.

    ``(H, W)`` (``(L,)``, ``(D, H, W)``) where the first convolution, of that many spatial
    dims, takes 1 channel: its ``forward`` adds the axis (held out: MNIST held as
    ``TensorDataset(mnist.data / 255., mnist.targets)`` and ``x.unsqueeze(1)`` in
    ``forward``; Grad-CAM and feature maps stepped aside on "flat vectors").

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 8, 3))
        >>> no_channel_axis(torch.zeros(28, 28), net), no_channel_axis(torch.zeros(1, 28, 28), net)
        (True, False)
    """
    first = next((m for m in model.modules() if isinstance(m, _CONV)), None)
    return first is not None and image.dim() == len(first.kernel_size) and first.in_channels == 1


class SeenView(_View):
    """``dataset`` with each item's image as the convolutions see it (``form``: as stored)."""

    def __init__(self, dataset: Any, form: str) -> None:
        self.dataset, self.form = dataset, form

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return _with_image(self.dataset[index], self._seen)

    def _seen(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            x = torch.as_tensor(np.ascontiguousarray(x))
        if not isinstance(x, Tensor):
            return x
        return x.movedim(-1, 0) if self.form == CHANNELS_LAST else x.unsqueeze(0)


def _with_image(item: Any, change: Callable[[Any], Any]) -> Any:
    """``item`` with its input (``items.parts``) replaced by ``change(input)``."""
    if isinstance(item, Tensor | np.ndarray):
        return change(item)
    x = parts(item)[0]
    if isinstance(item, Mapping):
        key = image_key(item) or next(k for k, v in item.items() if v is x)
        return {**item, key: change(x)}
    if isinstance(item, Sequence) and not isinstance(item, str):
        changed = [change(v) if v is x else v for v in item]
        return tuple(changed) if isinstance(item, tuple) else changed
    return item


def seen_view(dataset: Any, form: str | None) -> Any:
    """``dataset`` with its images as the convolutions see them (``form`` ``None``: as stored).

    Example::

        >>> data = [(torch.zeros(28, 28), 3)]
        >>> tuple(seen_view(data, NO_CHANNEL)[0][0].shape), seen_view(data, None) is data
        ((1, 28, 28), True)
    """
    if form is None or (isinstance(dataset, SeenView) and dataset.form == form):
        return dataset
    return SeenView(dataset, form)


def seen_batch(images: Tensor, form: str | None) -> Tensor:
    """A batch of ``images`` as stored, as the convolutions see them."""
    if form == CHANNELS_LAST:
        return images.movedim(-1, 1)
    return images.unsqueeze(1) if form == NO_CHANNEL else images


def stored_batch(images: Tensor, form: str | None) -> Tensor:
    """A batch of ``images`` as the convolutions see them, as the dataset stores them."""
    if form == CHANNELS_LAST:
        return images.movedim(1, -1)
    return images.squeeze(1) if form == NO_CHANNEL else images


def unbatched_view(dataset: Any) -> Any:
    """``dataset`` seen sample by sample where its items are batches, else as it is.

    For a loader that does not batch (``batch_size=None``), which hands the model its
    dataset's items as they are: an item whose tensors share a first axis of 2 or more is
    a batch. Decided once per dataset from its first and last items.

    Example::

        >>> import torch
        >>> batches = [(torch.zeros(4, 1, 2, 2), torch.arange(4)) for _ in range(3)]
        >>> view = unbatched_view(batches)
        >>> len(view), tuple(view[5][0].shape), int(view[5][1])
        (12, (1, 2, 2), 1)
    """
    if not _has_items(dataset):
        return dataset
    return _cached(_unbatched, dataset, _unbatch_decide)


def _unbatch_decide(dataset: Any) -> Any:
    first = read_item(dataset, 0)
    tensors = [t for t in _tensors(first) if t.dim() >= 1]
    per = int(tensors[0].shape[0]) if tensors else 0
    if per < 2 or any(int(t.shape[0]) != per for t in tensors):
        return dataset
    last = read_item(dataset, len(dataset) - 1)
    tail = [t for t in _tensors(last) if t.dim() >= 1]
    size = (len(dataset) - 1) * per + (int(tail[0].shape[0]) if tail else per)
    return Unbatched(dataset, per, size)


def _tensors(item: Any) -> list[Tensor]:
    if isinstance(item, Tensor):
        return [item]
    if isinstance(item, Mapping):
        item = list(item.values())
    if isinstance(item, Sequence) and not isinstance(item, str):
        return [t for v in item for t in _tensors(v)]
    return []


def source_dataset(data: Any) -> Any:
    """The dataset itself behind a ``Collated`` or ``Unbatched`` view (else ``data``)."""
    return data.dataset if isinstance(data, _View) else data
