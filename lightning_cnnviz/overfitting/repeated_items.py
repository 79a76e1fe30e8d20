"""A training loader that hands the same few items at every step, whatever its length says.

Nothing here knows about Lightning. Held out (hunt 33): a dataset whose ``__getitem__``
ignored most of the index served the same 64 digits at every step of a 2,000-item set;
val sat at 73-75% from the start and it was told as overfitting three validations late,
"stop at epoch 0". The first ``BATCHES`` training batches are read as per-image keys
(``core.image_keys``): where their first ``EARLY`` hold no more distinct images than one
batch while the set is many batches long, or all ``BATCHES`` hold half as many different
images as they read within one pass over the set (hunt 36: a batch sampler cycling 2
or 4 batches, told as overfitting), the loader repeats them.

Example::

    >>> import torch
    >>> from lightning_cnnviz.core.image_keys import image_keys
    >>> x = torch.rand(8, 1, 4, 4)
    >>> keys = [image_keys(x), image_keys(x.flip(0)), image_keys(x[[0, 1] * 4])]
    >>> found = repeated_items(keys, batch_size=8, set_size=800)
    >>> found["distinct"], found["read"]
    (8.0, 24.0)
    >>> repeated_items([image_keys(torch.rand(8, 1, 4, 4)) for _ in range(3)], 8, 800)
    {}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from torch.utils.data import BatchSampler, SequentialSampler, WeightedRandomSampler

from lightning_cnnviz.core.image_keys import ImageKey
from lightning_cnnviz.core.samplers import loader_sampler, sampled_indices, weighted_reach

__all__ = [
    "BATCHES",
    "CONFIRM",
    "EARLY",
    "SET_REPEATS",
    "drawn_reach",
    "loader_reach",
    "reach_text",
    "repeated_items",
    "repeated_set",
    "repeated_set_text",
    "repeated_text",
]

EARLY = 3  # training batches read for a loader handing one batch again and again
BATCHES = 16  # ... for one cycling a few batches (within one pass over the set)
AGAIN = 0.9  # a batch holding this share of an earlier one's images is that batch again
SPAN = 4  # the set must be this many batches long: a one-batch set repeats by design
SET_REPEATS = 4  # a set of this many items per different image repeats its images
PAIRS = 3  # equal pairs among the probe's images before an estimate counts
CONFIRM = 512  # items read at random to confirm what the probe's images suggest
EVERY_CLASS = 2.0  # each class read 8+ times repeats its images this many times or more
CLASS_READS = 8
# one image this share of the items read: a `__getitem__` returning one item for many
# indices, not rare classes oversampled by copying their images (held out, hunt 106: an
# index ignored for half of 3,000 items, one digit half of every batch, went untold: the
# other classes' images hardly repeat, which the oversampling exemption reads)
FLOOD = 0.25


def repeated_items(
    keys: Sequence[list[ImageKey | None]], batch_size: int, set_size: int
) -> dict[str, Any]:
    """Figures where the batches read repeat their images (``{}``: fine).

    ``EARLY`` batches holding no more different images than one, or ``BATCHES`` batches
    (no more items than the set holds) of which half hold an earlier batch's images
    again (``AGAIN`` of them): a set that repeats its images (rare ones copied) gives
    batches that share a few, never whole batches.
    """
    read = sum(len(k) for k in keys)
    if len(keys) < EARLY or set_size < SPAN * batch_size or read < EARLY * 2:
        return {}
    distinct = len({key for batch in keys for key in batch})
    one = len(keys) == EARLY and distinct <= max(len(k) for k in keys)
    few = len(keys) >= BATCHES and read <= set_size and 2 * _again(keys) >= len(keys)
    if not (one or few):
        return {}
    return {"distinct": float(distinct), "read": float(read), "set_size": float(set_size),
            "batches": float(len(keys))}  # fmt: skip


def _again(keys: Sequence[list[ImageKey | None]]) -> int:
    """The batches holding ``AGAIN`` of their images in one earlier batch."""
    sets = [set(batch) for batch in keys]
    return sum(
        any(len(now & before) >= AGAIN * len(now) for before in sets[:i])
        for i, now in enumerate(sets)
        if now
    )


def repeated_text(f: dict[str, Any]) -> str:
    """The finding's sentence."""
    return (
        f"The training loader hands the same few images at every step: its first "
        f"{f.get('batches', EARLY):.0f} batches hold {f['read']:.0f} images but only "
        f"{f['distinct']:.0f} different ones, of a training set of {f['set_size']:.0f}. The "
        "model learns those "
        "and never sees the rest, so val accuracy stays where those take it. Check the "
        "dataset's `__getitem__` (an index ignored or wrapped, a cached batch), a sampler "
        "that draws the same indices, and a loader made anew at every step "
        "(`next(iter(loader))`)."
    )


def repeated_set(
    keys: Sequence[ImageKey | None], set_size: int, labels: Sequence[int] | None = None
) -> dict[str, Any]:
    """How few different images a training set holds, from a probe's keys (``{}``: fine).

    ``keys``: one per probe image drawn from the set's positions (``None`` for an image
    of one value, which says nothing). Among ``n`` drawn from a set whose ``M`` items
    hold ``D`` different images alike often, about ``n(n - 1) / 2D`` pairs are equal:
    ``D`` is estimated from the pairs found (exactly counted where the probe is the whole
    set). Told where the set holds ``SET_REPEATS`` x or more items than images. Held out
    (hunt 34): a ``__getitem__`` wrapping its index at 256 of 2000 items (val flat at 89%
    against 96%) was never told, and a few-shot set of 64 digits repeated 31 times was
    told as a loader repeating its batches.

    ``labels``: the images' classes, from items drawn at random (not class-balanced):
    every class read ``CLASS_READS`` times or more must repeat its images
    ``EVERY_CLASS`` x or more. Rare classes oversampled by copying their images leave
    the common ones unrepeated (hunt 36: a long tail balanced by copies, 994 different
    images in 4000 items, was told as "only about 181 different images").

    Example::

        >>> keys = [(i % 16,) for i in range(64)]  # 64 probe images, 16 different ones
        >>> found = repeated_set(keys, set_size=2000)
        >>> round(found["distinct"]), found["pairs"]
        (21, 96.0)
        >>> repeated_set([(i,) for i in range(64)], set_size=2000)
        {}
        >>> rare = [(i % 4,) for i in range(32)] + [(100 + i,) for i in range(32)]
        >>> repeated_set(rare, 2000, [1] * 32 + [0] * 32)  # class 0 never repeats
        {}
    """
    drawn = list(zip(keys, labels if labels is not None else [None] * len(keys), strict=True))
    seen = [(k, c) for k, c in drawn if k is not None]
    n = len(seen)
    distinct, pairs = _distinct([k for k, _ in seen], set_size)
    if n < 8 or pairs < PAIRS or distinct * SET_REPEATS > set_size:
        return {}
    counts = Counter(k for k, _ in seen)
    key, top = max(counts.items(), key=lambda kv: kv[1])
    top /= n
    if labels is not None and top >= FLOOD and _one_image_class(seen, key):
        return {}  # a class that is one image by design (hunt 107: a background class)
    if labels is not None and top < FLOOD:
        for c in {c for _, c in seen}:
            own = [k for k, d in seen if d == c]
            if len(own) >= CLASS_READS:
                images, _ = _distinct(own, set_size * len(own) // n)
                if images * EVERY_CLASS > set_size * len(own) / n:
                    return {}  # this class hardly repeats: the copies are others' (oversampling)
    return {"distinct": distinct, "set_size": float(set_size), "probe": float(n),
            "pairs": float(pairs), "counted": float(n >= set_size), "one_image": top}  # fmt: skip


def _one_image_class(seen: Sequence[tuple[ImageKey, Any]], key: ImageKey) -> bool:
    """Whether every item of ``key``'s class(es) read is that one image: a class built so.

    An index ignored for part of a set hands one image of a class that holds others too.
    """
    classes = {c for k, c in seen if k == key}
    return None not in classes and all(k == key for k, c in seen if c in classes)


def _distinct(keys: Sequence[ImageKey], set_size: int) -> tuple[float, int]:
    """The different images ``keys`` (drawn from ``set_size`` items) suggest, and equal pairs."""
    counts: dict[ImageKey, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    pairs = sum(c * (c - 1) // 2 for c in counts.values())
    n = len(keys)
    if n >= set_size:  # the whole set read: counted
        return float(len(counts)), pairs
    return (n * (n - 1) / 2 / pairs if pairs else float("inf")), pairs


def repeated_set_text(f: dict[str, Any]) -> str:
    """The finding's sentence for a set that repeats its images."""
    about = "" if f["counted"] else "about "
    if f.get("one_image", 0.0) >= FLOOD:  # one image for many indices: the others vary
        return (
            f"The training set hands one image for about {f['one_image']:.0%} of its "
            f"{f['set_size']:.0f} items ({f['one_image'] * f['probe']:.0f} of "
            f"{f['probe']:.0f} items read from it at random are that image): the model "
            "trains that often on one image of one class. Check the dataset's "
            "`__getitem__` (an index ignored, clamped or wrapped for part of the set) and "
            "how the set was built (one item repeated in a list, a cache keyed wrongly)."
        )
    return (
        f"The training set holds only {about}{f['distinct']:.0f} different images among its "
        f"{f['set_size']:.0f} items ({f['pairs']:.0f} equal pairs among {f['probe']:.0f} "
        f"probe images read from it): each image comes about "
        f"{f['set_size'] / f['distinct']:.0f} times, and the model can learn only those. "
        "Where the set is a small one repeated on purpose, that is its size; else check "
        "the dataset's `__getitem__` (an index ignored or wrapped) and how the set was "
        "built (a list of one batch repeated, a cache keyed wrongly)."
    )


def loader_reach(loader: Any, set_size: int, batches: float = float("inf")) -> dict[str, Any]:
    """How few of its set's items a training loader can ever read (``{}``: fine).

    Counted where the loader reads the same items every epoch: a sampler holding its
    indices (``core.samplers.sampled_indices``: a ``SubsetRandomSampler``...), or a
    sequential one cut short after ``batches`` batches (``limit_train_batches``). Told
    where it reaches ``1 / SET_REPEATS`` of the set or less, as a note (a subset may be on
    purpose: hunt 37, a split of one set by samplers, 20% for training) that the curves'
    findings then name as their cause. Held out (hunt 35): a debugging
    ``SubsetRandomSampler(range(128))`` left on a 2,000-item set (val 81-84% against 95%)
    was told as overfitting, "stop at epoch 15", with no cause.

    Example::

        >>> from torch.utils.data import DataLoader, SubsetRandomSampler
        >>> data = list(range(2000))
        >>> loader = DataLoader(data, 64, sampler=SubsetRandomSampler(range(128)))
        >>> loader_reach(loader, 2000)["reach"]
        128.0
        >>> loader_reach(DataLoader(data, 64, shuffle=True), 2000)
        {}
    """
    batching = getattr(loader, "batch_sampler", None)
    sampler = loader_sampler(loader)
    indices = sampled_indices(sampler, set_size)
    if indices is None and isinstance(sampler, WeightedRandomSampler):
        indices = weighted_reach(sampler)  # hunt 37: 90% of the items weighted 1e-7
    if indices is not None:
        reach, by = len(set(indices)), f"its `{type(sampler).__name__}` reaches no others"
    elif isinstance(batching, BatchSampler) and isinstance(sampler, SequentialSampler):
        if batches == float("inf"):
            return {}
        reach = min(int(batches) * batching.batch_size, set_size)
        by = f"an unshuffled loader cut at {int(batches)} batches an epoch"
    else:
        return {}
    if reach * SET_REPEATS > set_size or reach == 0:
        return {}
    return {"reach": float(reach), "set_size": float(set_size), "by": by}


def drawn_reach(
    keys: Sequence[Sequence[ImageKey]], labels: Sequence[int] | None, set_size: int
) -> dict[str, Any]:
    """How few of its set's items a loader draws from, from its first batches' images.

    A sampler or batch sampler of one's own holds its items where none can read them
    (hunt 38: random batches drawn from the first 300 of 2,000 indices, val 89-91%
    against 95%, never told): the ``BATCHES`` batches it handed first, read as images,
    give as many equal pairs as draws from ``D`` items would (``repeated_set``'s
    estimate, each class's own repeats compared). ``labels``: the images' classes, one
    per key of the flattened batches (``None``: not known). Figures as ``loader_reach``'s.

    Example::

        >>> import torch
        >>> pool = torch.randint(0, 300, (16, 64), generator=torch.Generator().manual_seed(0))
        >>> found = drawn_reach([[(int(i),) for i in batch] for batch in pool], None, 2000)
        >>> 250 < found["reach"] < 350
        True
        >>> drawn_reach([[(i, b) for i in range(64)] for b in range(16)], None, 2000)
        {}
    """
    flat = [key for batch in keys for key in batch]
    found = repeated_set(flat, set_size, labels)
    if not found:
        return {}
    by = (
        f"its first {len(keys)} batches drew {len(flat)} images holding "
        f"{found['pairs']:.0f} equal pairs, as draws from that many items would: a sampler "
        "of its own drawing from those"
    )
    return {"reach": found["distinct"], "set_size": float(set_size), "by": by,
            "estimated": 1.0 - found["counted"]}  # fmt: skip


def reach_text(f: dict[str, Any]) -> str:
    """The finding's sentence for a loader that reads few of its set's items."""
    share = f["reach"] / f["set_size"]
    about = "about " if f.get("estimated") else ""
    return (
        f"Training reads only {about}{f['reach']:.0f} of the {f['set_size']:.0f} items of "
        f"its set ({share:.0%}), the same ones every epoch ({f['by']}): the model learns "
        "those and val accuracy stays where they take it. "
        "Where a debugging subset or `limit_train_batches` was left in, remove it; where "
        "the subset is on purpose, that is its size (more of the set, or augmentation, "
        "helps)."
    )
