"""The datasets a run reads, found without iterating its loaders.

Nothing here iterates a ``DataLoader`` (that draws a seed from the global generator and
would change training): ``find_dataset`` reaches the dataset behind the run's train or
val loader, seen as the model gets it (through a ``collate_fn``, row by row for a loader
that does not batch, restricted to the indices its sampler holds, ``samplers.py``, and as
the convolutions see its images: ``stored_form``).

Example::

    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> loader = DataLoader(TensorDataset(torch.zeros(6, 1, 2, 2)), batch_size=3)
    >>> len(_dataset_of(loader))
    6
"""

from __future__ import annotations

import weakref
from typing import Any

from torch.utils.data import (
    DataLoader,
    IterableDataset,
    Subset,
    default_collate,
)

from lightning_cnnviz.core.attribute_state import attributes_kept
from lightning_cnnviz.core.collated import Collated, collated_view, unbatched_view
from lightning_cnnviz.core.items import iterable_head
from lightning_cnnviz.core.outputs import NotApplicable
from lightning_cnnviz.core.random_state import rng_untouched
from lightning_cnnviz.core.samplers import dropped_tail, read_indices, sampler_known
from lightning_cnnviz.core.stored_form import seen_view

__all__ = [
    "NoDataset",
    "collate_unread",
    "dropped_items",
    "find_dataset",
    "has_val_data",
    "items_known",
    "no_val_why",
    "split_collate",
    "train_batch_size",
    "val_images",
]


class NoDataset(NotApplicable):
    """The run's loaders hold no dataset to read items from (a plain iterable of batches).

    The monitors that need items step aside saying so: reading them by iterating the
    loader would change the run's batches, and reading the dataset inside a wrapper would
    skip what the wrapper does to them (a conversion, a normalisation), which made probe
    readings of other inputs than training's (setups hunt 24).
    """


_subsets: weakref.WeakKeyDictionary[Any, Subset] = weakref.WeakKeyDictionary()


def _sampled(data: Any, loader: DataLoader) -> Any:
    """The items of ``data`` the loader reads (one view per loader, in its order), else ``data``.

    Two loaders over one dataset with a sampler each (a train/val split by indices,
    ``samplers.read_indices``): each probe is drawn from its own loader's items, not from
    the whole set (setups hunt 26: a val loader given a plain list of indices was read as
    the training set itself, a `val_is_train` problem); nor from the last part-batch an
    unshuffled loader drops every epoch.
    """
    found = _subsets.get(loader)
    if found is not None and found.dataset is data:
        return found  # read once per loader: a sampler may hold a million indices
    try:
        indices = read_indices(loader, len(data))
    except TypeError:  # a dataset without a length
        return data
    if indices is None:
        return data
    found = _subsets[loader] = Subset(data, indices)
    return found


def _dataset_of(loaders: Any) -> Any:
    if isinstance(loaders, DataLoader):
        data = loaders.dataset
        data = iterable_head(data) if isinstance(data, IterableDataset) else data
        data = _sampled(data, loaders)
        if loaders.batch_size is None and loaders.batch_sampler is None:
            return unbatched_view(data)  # a loader that does not batch: items are batches
        return collated_view(data, loaders.collate_fn)  # PIL items a `collate_fn` converts
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, list | tuple) and loaders:
        return _dataset_of(loaders[0])
    return None


def _defined_loaders(loop: Any) -> Any:
    """The loaders a fit loop will use, before it has loaded them.

    Lightning keeps them behind the private ``_data_source`` until the loop starts
    (e.g. validation before the first validation run); no public API gives them. Asked
    once per loop and source, with the random generators and the source's attributes kept:
    a ``val_dataloader`` drawing a random subset, or counting its calls, is as it would be
    without the monitors when Lightning calls it (setups hunt 23: training changed).
    """
    source = loop._data_source
    if source.instance is None or not source.is_defined():
        return None
    # kept on the loop, not in a table of this module: the source (the LightningModule or
    # DataModule) holds the trainer, which holds the loop, and a table keyed by the loop
    # kept every fit of a sweep alive (setups hunt 31)
    known = getattr(loop, "_cnnviz_defined", None)
    if known is None or known[0] is not source.instance:
        with rng_untouched(source.instance), attributes_kept(source.instance):
            known = (source.instance, source.dataloader())
        loop._cnnviz_defined = known
    return known[1]


def train_batch_size(trainer: Any) -> int | None:
    """The training loader's batch size (``None``: not known, or not one loader)."""
    loader = trainer.train_dataloader or _defined_loaders(trainer.fit_loop)
    size = getattr(loader, "batch_size", None)
    return size if isinstance(size, int) else None


def _val_loaders(trainer: Any) -> Any:
    """The run's val loaders, loaded or still defined only (None, or empty: none)."""
    loaders = trainer.val_dataloaders
    return (
        loaders if loaders is not None else _defined_loaders(trainer.fit_loop.epoch_loop.val_loop)
    )


def _val_dataset(trainer: Any) -> Any:
    """The val loader's dataset; ``None`` where it holds no item (Lightning validates none)."""
    dataset = _dataset_of(_val_loaders(trainer))
    return None if _empty(dataset) else dataset


def _empty(dataset: Any) -> bool:
    """Whether ``dataset`` is sized and holds no item.

    Setups hunt 54: an empty val split made three monitors fail drawing a probe of 0
    images; with no val loader they read the training set, as they now do here.
    """
    try:
        return len(dataset) == 0
    except TypeError:  # an iterable dataset, or None
        return False


def collate_unread(trainer: Any, split: str) -> bool:
    """Whether ``split``'s loader has a ``collate_fn`` the probes do not read through.

    One that draws at random (``collated.collated_view`` leaves it to the loader): what it
    does to the images (a normalisation with noise added) is not in the probes.
    """
    loader = _split_loader(trainer, split)
    if split_collate(trainer, split) is None:
        return False
    return not isinstance(_dataset_of(loader), Collated)


def split_collate(trainer: Any, split: str) -> Any:
    """``split``'s loader's own ``collate_fn`` (``None``: the default, or no batching loader)."""
    loader = _split_loader(trainer, split)
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        return None
    collate = loader.collate_fn
    return None if collate is None or collate is default_collate else collate


def _split_loader(trainer: Any, split: str) -> Any:
    loaders = _val_loaders(trainer) if split == "val" else trainer.train_dataloader
    return loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders


def items_known(trainer: Any, split: str) -> bool:
    """Whether the items ``split``'s loader reads are known (``sampler_known``; True: no loader)."""
    loaders = _val_loaders(trainer) if split == "val" else trainer.train_dataloader
    loader = loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders
    if not isinstance(loader, DataLoader):
        return True
    try:
        return sampler_known(loader, len(loader.dataset))
    except TypeError:  # a dataset without a length
        return True


def dropped_items(trainer: Any) -> int:
    """How many items the training loader never reads: the last part-batch of a fixed order.

    ``samplers.dropped_tail``: 0 where it shuffles or keeps its last batch, or where no
    ``DataLoader`` over a sized dataset is found.
    """
    loader = _split_loader(trainer, "train")
    if not isinstance(loader, DataLoader):
        return 0
    try:
        return dropped_tail(loader, len(loader.dataset))
    except TypeError:  # a dataset without a length
        return 0


def has_val_data(trainer: Any) -> bool:
    """Whether the run has validation data of its own (``find_dataset`` falls back to train).

    Val loaders that hold no dataset (a wrapper of a ``DataLoader``) count: Lightning
    validates on them, and ``find_dataset`` says it cannot read them rather than read the
    training set under the name of val (setups hunt 24).
    """
    loaders = _val_loaders(trainer)
    dataset = _dataset_of(loaders)
    if dataset is not None:
        return not _empty(dataset)
    return loaders is not None and not (isinstance(loaders, list | tuple | dict) and not loaders)


def no_val_why(trainer: Any) -> str:
    """Why the run has no val data to read (``has_val_data`` is false), in words.

    Example::

        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> class Fitted:  # Lightning's trainer, where `fit` handed it no val loader
        ...     val_dataloaders = []
        >>> no_val_why(Fitted())
        'the run has no validation data'
        >>> Fitted.val_dataloaders = DataLoader(TensorDataset(torch.zeros(0, 2)))
        >>> no_val_why(Fitted())
        'the val loader holds no item (an empty val dataset)'
    """
    loaders = _val_loaders(trainer)
    if _empty(_dataset_of(loaders)):
        if isinstance(loaders, list | tuple) and len(loaders) > 1:  # (setups hunt 73)
            n = len(loaders)
            return f"the first of the {n} val loaders, the one the monitors read, holds no item"
        return "the val loader holds no item (an empty val dataset)"
    return "the run has no validation data"


def val_images(trainer: Any) -> int | None:
    """The images one validation of the first val loader sees (None: not known).

    Its dataset's length, capped by the batches the loop runs (``limit_val_batches``):
    what a logged val accuracy is a share of, and so its binomial error.
    """
    loaders = trainer.val_dataloaders
    loader = loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders
    batches = trainer.num_val_batches
    batches = batches[0] if isinstance(batches, list | tuple) and batches else batches
    try:
        size = len(loader.dataset)
        per = loader.batch_size or 1
    except (AttributeError, TypeError):
        return None
    if isinstance(batches, int | float) and 0 < batches < float("inf"):
        size = min(size, int(batches) * per)
    return size or None


def find_dataset(trainer: Any, split: str) -> Any:
    """The dataset behind the run's ``"train"`` or ``"val"`` loader, without iterating it.

    Falls back from val to train when the run has no validation data. Images stored
    stored otherwise than the convolutions see them (channels last, or without a channel
    axis), which ``forward`` fixes, are seen as the convolutions see them
    (``stored_form.seen_view``, where ``ProbeReader.fit_inputs`` found them so).
    """
    dataset = _val_dataset(trainer) if split == "val" else None
    if dataset is None and split == "val" and has_val_data(trainer):
        raise NoDataset(_no_dataset_why(_val_loaders(trainer), "val"))
    if dataset is None:
        dataset = _dataset_of(trainer.train_dataloader)
    if dataset is None:
        dataset = _dataset_of(_defined_loaders(trainer.fit_loop))
    if dataset is None:
        raise NoDataset(_no_dataset_why(trainer.train_dataloader, "training"))
    return seen_view(dataset, getattr(trainer, "_cnnviz_stored", None))


def _no_dataset_why(loader: Any, split: str) -> str:
    """Why no dataset was found, naming the ``split``'s loader."""
    loader = next(iter(loader.values()), None) if isinstance(loader, dict) else loader
    loader = loader[0] if isinstance(loader, list | tuple) and loader else loader
    what = f"a `{type(loader).__name__}`" if loader is not None else "not known yet"
    return (
        f"cannot find a dataset to draw probe images from: the {split} loader is {what}, "
        "not a `DataLoader` over a dataset, and its items cannot be read without iterating "
        "it (which would change the run's batches) nor without what it does to them; hand "
        "the Trainer the `DataLoader` itself (converting in the dataset's transform, "
        "`forward` or `on_after_batch_transfer`) for the monitors to read the model"
    )
