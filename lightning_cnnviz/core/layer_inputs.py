"""What the model's first layer meets in each split, the steps' own code included.

``StepInput`` (``step_input_shift.py``) holds one batch of a split as loaded and as its
first layer received it. The probes compare the datasets' images; where the steps change
them (a normalisation written in `training_step`), what the model meets is the first
layer's input instead: ``changes_inputs`` reads whether a step does, ``layer_shift``
compares the two splits there by ``input_shift``'s bars. Held out (hunt 116): a random
resized crop and a normalisation in `training_step`, the val set normalised in its
dataset, was told "preprocessed differently" from the raw training images, while both
splits reached the model at mean near 0 and spread near 1.

Example::

    >>> import torch
    >>> x, v = torch.rand(32, 1, 8, 8), torch.rand(32, 1, 8, 8)
    >>> train, val = step_input(x, (x - 0.5) / 0.29), step_input((v - 0.5) / 0.29, (v - 0.5) / 0.29)
    >>> changes_inputs(train), changes_inputs(val), layer_shift(train, val)
    (True, False, {})
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

__all__ = ["UNCHANGED", "changes_inputs", "layer_shift", "step_input"]

UNCHANGED = 0.05  # a mean moved and a spread scaled within this share of the spread: as loaded


def changes_inputs(s: StepInput) -> bool:
    """Whether a step hands its first layer other per-channel statistics than the batch's own."""
    for mean, std, l_mean, l_std in zip(*(t.float().tolist() for t in s.stats), strict=True):
        spread = max(std, FLAT)
        if abs(l_mean - mean) > UNCHANGED * spread or abs(l_std - std) > UNCHANGED * spread:
            return True
    return False


def layer_shift(train: StepInput, val: StepInput) -> dict[str, float]:
    """The channel whose statistics differ most between what the two splits' first layers got.

    Two batches of other images, by ``input_shift``'s bars (``{}``: alike).
    """
    if train.layer_mean.shape != val.layer_mean.shape:
        return {}
    rows = list(zip(*(t.float().tolist() for t in (*train.stats[2:], *val.stats[2:])), strict=True))
    floors = faint_floors([r[1] for r in rows], [r[3] for r in rows])
    return worst_channel([channel_shift(*row, (SHIFT_MEAN, SHIFT_SCALE), floors) for row in rows])
