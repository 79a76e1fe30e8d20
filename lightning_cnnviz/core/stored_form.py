"""Images stored otherwise than a model's convolutions see them, which its ``forward`` fixes.

Nothing here knows about Lightning. Channels last (``(H, W, C)``, a Keras port whose
``forward`` permutes them: ``channels_last``) or without a channel axis (``(H, W)``,
``forward`` adding it: ``no_channel_axis``). ``seen_view`` shows a dataset's images as
the convolutions see them, for the probes to draw and measure; ``stored_batch`` hands a
probe pass's images to ``forward`` as the dataset stores them.

Example::

    >>> import torch
    >>> data = [(torch.zeros(28, 28), 3)]
    >>> tuple(seen_view(data, NO_CHANNEL)[0][0].shape), seen_view(data, None) is data
    ((1, 28, 28), True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lightning_cnnviz.core.collated import View
from lightning_cnnviz.core.item_fields import image_key
from lightning_cnnviz.core.items import parts
from lightning_cnnviz.core.layer_types import first_torch_conv

__all__ = [
    "CHANNELS_LAST",
    "GREY",
    "GREY_FLAT",
    "GREY_LAST",
    "NO_CHANNEL",
    "WORDS",
    "SeenView",
    "channels_last",
    "form_of",
    "grey_for_three",
    "no_channel_axis",
    "seen_batch",
    "seen_view",
    "stored_batch",
]

CHANNELS_LAST = "channels last"  # (H, W, C): forward permutes them
NO_CHANNEL = "no channel axis"  # (H, W): forward adds the axis
GREY = "one channel for three"  # (1, H, W) where the convolutions take 3: the steps repeat it
GREY_LAST = "one channel last for three"  # (H, W, 1): the steps permute, then repeat it
GREY_FLAT = "no channel axis for three"  # (H, W): the steps add the axis, then repeat it
# how each form is stored, and what makes it the convolutions' (words)
WORDS = {
    CHANNELS_LAST: ("channels last", "permutes them"),
    NO_CHANNEL: ("without a channel axis", "adds it"),
    GREY: ("with one channel", "repeats it to three"),
    GREY_LAST: ("channels last with one channel", "permutes it and repeats it to three"),
    GREY_FLAT: ("without a channel axis", "adds one and repeats it to three"),
}
# each form's conversion, in order: the channel axis moved first or added, then repeated
_STEPS = {
    CHANNELS_LAST: ("last",),
    NO_CHANNEL: ("add",),
    GREY: ("repeat",),
    GREY_LAST: ("last", "repeat"),
    GREY_FLAT: ("add", "repeat"),
}

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
    first = first_torch_conv(model)
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
    first = first_torch_conv(model)
    return first is not None and image.dim() == len(first.kernel_size) and first.in_channels == 1


def grey_for_three(image: Tensor, model: nn.Module) -> bool:
    """Whether ``image`` has one channel where ``model``'s first convolution takes three.

    A grey image an RGB network takes repeated (``x.repeat(1, 3, 1, 1)`` in the steps:
    held out, digits for a 3-channel net made every probe monitor step aside on
    "expected input to have 3 channels, but got 1").

    Example::

        >>> grey_for_three(torch.zeros(1, 28, 28), nn.Conv2d(3, 8, 3))
        True
    """
    first = first_torch_conv(model)
    if first is None or image.dim() != len(first.kernel_size) + 1:
        return False
    return first.in_channels == 3 and image.shape[0] == 1


def form_of(image: Tensor, model: nn.Module, converted: bool = False) -> str | None:
    """How ``image`` is stored for ``model``: ``CHANNELS_LAST``, ``NO_CHANNEL`` or ``None``.

    ``converted``: what the model's steps convert, not its ``forward``: also ``GREY``, and
    grey stored channels last or without a channel axis (``GREY_LAST``, ``GREY_FLAT``).

    Example::

        >>> form_of(torch.zeros(28, 28, 3), nn.Conv2d(3, 8, 3)) == CHANNELS_LAST
        True
        >>> form_of(torch.zeros(3, 28, 28), nn.Conv2d(3, 8, 3)) is None
        True
        >>> form_of(torch.zeros(1, 28, 28), nn.Conv2d(3, 8, 3), converted=True) == GREY
        True
    """
    if converted and grey_for_three(image, model):
        return GREY
    if converted and _three(model, image.dim()) and image.shape[-1] == 1 != image.shape[0]:
        return GREY_LAST  # (setups hunt 36: grey digits stored (28, 28, 1) for an RGB net)
    if converted and _three(model, image.dim() + 1):
        return GREY_FLAT
    if channels_last(image, model):
        return CHANNELS_LAST
    return NO_CHANNEL if no_channel_axis(image, model) else None


def _three(model: nn.Module, dims: int) -> bool:
    """Whether ``model``'s first convolution takes 3 channels of ``dims - 1`` spatial dims."""
    first = first_torch_conv(model)
    return first is not None and dims == len(first.kernel_size) + 1 and first.in_channels == 3


class SeenView(View):
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
        return seen_batch(x[None], self.form)[0] if isinstance(x, Tensor) else x


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
    """``dataset`` with its images as the convolutions see them (``form`` ``None``: as stored)."""
    if form is None or (isinstance(dataset, SeenView) and dataset.form == form):
        return dataset
    return SeenView(dataset, form)


def seen_batch(images: Tensor, form: str | None) -> Tensor:
    """A batch of ``images`` as stored, as the convolutions see them."""
    for step in _STEPS.get(form, ()):  # type: ignore[arg-type]
        if step == "last":
            images = images.movedim(-1, 1)
        elif step == "add":
            images = images.unsqueeze(1)
        else:
            images = images.repeat(1, 3, *([1] * (images.dim() - 2)))
    return images


def stored_batch(images: Tensor, form: str | None) -> Tensor:
    """A batch of ``images`` as the convolutions see them, as the dataset stores them."""
    for step in reversed(_STEPS.get(form, ())):  # type: ignore[arg-type]
        if step == "last":
            images = images.movedim(1, -1)
        elif step == "add":
            images = images.squeeze(1)
        else:
            images = images[:, :1]
    return images
