"""One batch of each split compared: as loaded, or as the model's first layer met it.

``StepInput`` (``step_input_shift.py``) holds one batch of a split as loaded and as its
first layer received it. The probes compare the datasets' images; ``loaded_shift``
compares the batches as the loaders made them (a ``collate_fn`` that draws at random,
which the probes do not read through), ``layer_shift`` what the two splits' first layers
met, the steps' own code included, and ``changes_inputs`` reads whether a step changed
its batch's statistics at all. Both comparisons use ``input_shift``'s bars. Held out
(hunt 116): a random resized crop and a normalisation in `training_step`, the val set
normalised in its dataset, was told "preprocessed differently" from the raw training
images, while both splits reached the model at mean near 0 and spread near 1.

Example::

    >>> import torch
    >>> x, v = torch.rand(32, 1, 8, 8), torch.rand(32, 1, 8, 8)
    >>> train, val = step_input(x, (x - 0.5) / 0.29), step_input((v - 0.5) / 0.29, (v - 0.5) / 0.29)
    >>> changes_inputs(train), changes_inputs(val), layer_shift(train, val)
    (True, False, {})
    >>> loaded_shift(train, val)["scale_ratio"] > 2
    True
"""

from __future__ import annotations

from lightning_cnnviz.core.input_shift import (
    FLAT,
    SHIFT_MEAN,
    SHIFT_SCALE,
    channel_shift,
    faint_floors,
    worst_channel,
)
from lightning_cnnviz.core.step_input_shift import StepInput, step_input

__all__ = ["UNCHANGED", "changes_inputs", "layer_shift", "loaded_shift", "step_input"]

UNCHANGED = 0.05  # a mean moved and a spread scaled within this share of the spread: as loaded


def changes_inputs(s: StepInput) -> bool:
    """Whether a step hands its first layer other per-channel statistics than the batch's own."""
    for mean, std, l_mean, l_std in zip(*(t.float().tolist() for t in s.stats), strict=True):
        spread = max(std, FLAT)
        if abs(l_mean - mean) > UNCHANGED * spread or abs(l_std - std) > UNCHANGED * spread:
            return True
    return False


def loaded_shift(train: StepInput, val: StepInput) -> dict[str, float]:
    """The channel whose statistics differ most between the batches as loaded (``{}``: alike)."""
    return _shift(train, val, 0)


def layer_shift(train: StepInput, val: StepInput) -> dict[str, float]:
    """The channel whose statistics differ most between what the two first layers met."""
    return _shift(train, val, 2)


def _shift(train: StepInput, val: StepInput, at: int) -> dict[str, float]:
    """``worst_channel`` of the two batches' means and spreads from ``stats[at:at + 2]``."""
    if train.images_mean.shape != val.images_mean.shape:
        return {}
    pairs = (*train.stats[at : at + 2], *val.stats[at : at + 2])
    rows = list(zip(*(t.float().tolist() for t in pairs), strict=True))
    floors = faint_floors([r[1] for r in rows], [r[3] for r in rows])
    return worst_channel([channel_shift(*row, (SHIFT_MEAN, SHIFT_SCALE), floors) for row in rows])
