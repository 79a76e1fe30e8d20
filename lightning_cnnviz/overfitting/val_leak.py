"""Validation data that is the training data: the val loader handed the training set.

Nothing here knows about Lightning. ``trainer.fit(model, train_loader, train_loader)``,
or a val set built as a copy of the training set (held out, hunt 20: 300 digits and
their clone; the model reached 100% "val" accuracy while it memorised, and nothing was
said), makes every val figure measure memory: overfitting can never show. ``same_items``
reads a few items at the same positions of both sets, once per fit (random generators
untouched): all equal, images and labels, is the same data. Sets whose training items
are augmented at random never read equal, and are not told.

Example::

    >>> import torch
    >>> items = [(torch.full((1, 2, 2), float(i)), i % 3) for i in range(40)]
    >>> same_items(items, list(items)), same_items(items, items[20:])
    (8, 0)
    >>> same_items(items[:4], items[:4]) is None  # too few to tell a copy from chance
    True
"""

from __future__ import annotations

from typing import Any

import torch

from lightning_cnnviz.core.image_keys import image_keys
from lightning_cnnviz.core.items import read_item, split_sample
from lightning_cnnviz.core.real_values import real_values

__all__ = [
    "COMPARED",
    "LEAKED_IMAGES",
    "LEAKED_SHARE",
    "NEAR",
    "leaked_share",
    "leaked_text",
    "near_copies",
    "same_items",
    "shared_images",
    "val_is_train_text",
]

COMPARED = 8  # positions read in both sets
LEAKED_IMAGES = 3  # val probe images equal to train probe images: more than chance
LEAKED_SHARE = 0.05  # ...where they make this share of the val set, estimated


def same_items(train: Any, val: Any, label_key: Any = None) -> int | None:
    """How many of ``COMPARED`` positions hold the same item in both sets (0: they differ).

    The positions are spread over the shorter set; any that differ make it 0: a few
    equal items are chance (two blank images), all of them a copy. ``None``: the sets
    could not be compared (fewer than ``COMPARED`` items, no positions, or items that do not read as
    an image and a label), so the check did not run.
    """
    try:
        size = min(len(train), len(val))
    except TypeError:  # an iterable set: positions cannot be read
        return None
    if size < COMPARED:
        return None
    at = torch.linspace(0, size - 1, COMPARED).long().tolist()
    for i in at:
        try:
            (x, y), (x2, y2) = (split_sample(read_item(d, i), label_key) for d in (train, val))
        except Exception:  # items the probes read otherwise: nothing to compare here
            return None
        if y != y2 or x.shape != x2.shape or x.dtype != x2.dtype or not torch.equal(x, x2):
            return 0
    return COMPARED


def val_is_train_text(same: bool, compared: int) -> str:
    """The finding's sentence: the val loader's set is the training set (``same``) or a copy.

    Example::

        >>> val_is_train_text(False, 8)[:61]
        'The validation data are the training data: the val set holds '
    """
    how = (
        "the val loader reads the training set itself"
        if same
        else f"the val set holds the training set's items at the same positions ({compared} "
        "compared, images and labels equal)"
    )
    return (
        f"The validation data are the training data: {how}. Every val figure then measures "
        "how well the model remembers its training images, not how it does on new ones: "
        "overfitting cannot show, and the val accuracy reads as high as the training "
        "accuracy. Hold out a validation split (`torch.utils.data.random_split`), or pass "
        "the val loader you meant."
    )


def shared_images(train: torch.Tensor, val: torch.Tensor) -> int:
    """How many ``val`` images equal one of ``train``'s (images of one value left out).

    Example::

        >>> train = torch.arange(24.0).view(4, 1, 2, 3)
        >>> shared_images(train, torch.stack([train[1], train[3], train[1] + 1]))
        2
        >>> shared_images(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(2, 1, 2, 2))
        0
        >>> shared_images(train.bfloat16(), train[:2].bfloat16())
        2
    """
    seen = set(image_keys(train, plain=False)) - {None}
    return sum(1 for key in image_keys(val, plain=False) if key is not None and key in seen)


NEAR = 0.1  # a val image this close to a train one, against the train images' own spacing
NEAR_SIDE = 32  # images pooled to at most this side before their distances are read


def near_copies(train: torch.Tensor, val: torch.Tensor) -> int:
    """How many ``val`` images nearly equal one of ``train``'s: the same image, jittered.

    A val image whose nearest train image lies within ``NEAR`` of the train images' median
    distance to their own nearest (images pooled to ``NEAR_SIDE``; blank ones left out).
    Two different images of a set sit far closer to each other than that only where
    one is the other re-encoded, resized or with noise added: held out (hunt 106), 1,000
    training digits with noise of sd 0.05 as the val set read 99.9% val accuracy and
    nothing was said (``shared_images`` reads equal images only). Held-out digits' nearest
    train digits sit at 0.25-0.35 of that spacing, the jittered copies at 0.06.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> train = torch.rand(32, 1, 8, 8, generator=g)
        >>> jittered = train[:5] + 0.01 * torch.randn(5, 1, 8, 8, generator=g)
        >>> near_copies(train, torch.cat([jittered, torch.rand(5, 1, 8, 8, generator=g)]))
        5
    """
    a, b = _pooled(train), _pooled(val)
    a = a[(a != a[:, :1]).any(1)]  # blank images say nothing
    b = b[(b != b[:, :1]).any(1)]
    if len(a) < 2 or not len(b) or a.shape[1] != b.shape[1]:
        return 0
    own = torch.cdist(a, a)
    own.fill_diagonal_(float("inf"))
    spacing = float(own.min(1).values.median())
    if not spacing > 0:  # most train images repeated: their spacing says nothing
        return 0
    return int((torch.cdist(b, a).min(1).values < NEAR * spacing).sum())


def _pooled(images: torch.Tensor) -> torch.Tensor:
    """Images as float rows, maps pooled to at most ``NEAR_SIDE`` a side (its noise averaged)."""
    x = real_values(images.detach(), torch.float32)
    if x.dim() == 4 and max(x.shape[2:]) > NEAR_SIDE:
        x = torch.nn.functional.adaptive_avg_pool2d(x, (min(x.shape[2], NEAR_SIDE),
                                                        min(x.shape[3], NEAR_SIDE)))  # fmt: skip
    return x.flatten(1)


def leaked_share(shared: int, val_n: int, train_n: int, train_size: int) -> float:
    """The val set's share estimated to be training items, from ``shared`` probe images.

    The train probe holds ``train_n`` of the ``train_size`` training items, so a training
    item in the val probe matches one of them with chance ``train_n / train_size``.

    Example::

        >>> round(leaked_share(14, 128, 128, 600), 2)
        0.51
    """
    return min(1.0, shared / val_n / (train_n / max(train_size, train_n)))


def leaked_text(
    shared: int, val_n: int, train_n: int, train_size: int, share: float, near: bool = False
) -> str:
    """The finding's sentence for a val set of which a part are training items.

    Example::

        >>> leaked_text(14, 128, 128, 600, 0.51)[:61]
        'The validation data hold training images: 14 of the val probe'
    """
    equal = (
        "nearly equal images of the train probe (the same image with noise added, "
        "re-encoded or resized: far closer than the training images are to each other)"
        if near
        else "equal images of the train probe"
    )
    return (
        f"The validation data hold training images: {shared} of the val probe's {val_n} "
        f"images {equal} ({train_n} of the {train_size} training "
        f"items), so about {share:.0%} of the val set are training items. Every val figure "
        "is then partly how well the model remembers its training images: val accuracy "
        "reads high and overfitting shows late. Hold out a validation split that shares no "
        "items with training (`torch.utils.data.random_split` of one set), or drop the "
        "duplicates."
    )
