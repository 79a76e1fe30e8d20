"""The training loss step by step, and what its series says at a log.

Nothing here knows about Lightning. ``LossTrace`` keeps every training step's loss
(the detached tensor Lightning hands to ``on_train_batch_end``) on its device, with
no host sync, and moves them to the host in one transfer at a log (``read``). From
that series: ``first_nonfinite`` (the first NaN/inf step), ``start_loss`` and
``progress`` (how much the loss fell since the first steps: "learning stalled"). The
readings the training-side rules take at each log live in ``loss_levels.py``, the spike
rules built on the same series in ``divergence.py``.

Example::

    >>> trace = LossTrace()
    >>> for step, loss in enumerate([2.3, 2.2, 1.9, float("nan")]):
    ...     trace.add(step, torch.tensor(loss))
    >>> first_nonfinite(trace.read())
    3
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "MIN_STEPS",
    "SMOOTH",
    "LossTrace",
    "first_nonfinite",
    "progress",
    "start_loss",
]

SMOOTH = 5  # steps per median: one odd batch is not a spike
# a start this many times the first loss: a blow-up of the first steps, not a noisy start
# (a Conv1d BN net under Adam 0.5: 1.39 -> 165 at step 1, the median of 5 at 7x the first)
BLOWN_UP = 3.0
# ...or one of the first losses this many times their median: a one-step blow-up (as
# ``divergence.SPIKE_OVER_START``'s), whose aftermath lifts the median above the first loss
ONE_STEP = 1.5
MIN_STEPS = 20  # steps with a finite loss before ``progress`` says anything


class LossTrace:
    """Training losses per step, on the device until ``read`` (no sync in between).

    Args:
        fold_every: pending losses are stacked into one tensor every this many steps
            (one device op), so a long interval between logs keeps few tensors.
    """

    def __init__(self, fold_every: int = 1024) -> None:
        self.fold_every = fold_every
        self.series: list[tuple[int, float]] = []  # (step, loss) on the host, whole run
        self.bad_inputs: list[int] = []  # steps whose batch held NaN/Inf inputs (first few)
        self.epoch_starts: dict[int, int] = {}  # the steps that began an epoch (latest few)
        self._pending: list[Tensor] = []
        self._finite: list[Tensor] = []  # per step: whether the batch's inputs were finite
        self._steps: list[int] = []

    def add(
        self, step: int, loss: Tensor | None, inputs: Tensor | None = None, epoch: int | None = None
    ) -> None:
        """Keep ``loss`` (``core.step_loss.step_loss``'s: a scalar tensor, or None) for ``step``.

        ``inputs``: the batch's input tensor; whether it is all finite is kept beside the
        loss (one sum on its device, no sync): a loss that turns NaN with a NaN batch is the
        data's doing. ``epoch``: the epoch ``step`` began (its first batch), else None: a
        loss that blows up there points at what runs between epochs.
        """
        if epoch is not None:
            self.epoch_starts = dict(list(self.epoch_starts.items())[-15:]) | {step: epoch}
        if loss is None:
            return
        self._pending.append(loss.detach().reshape(1))
        floating = inputs is not None and inputs.is_floating_point()
        # a sum is NaN/Inf where an entry is: one reduction, ten times cheaper than a mask
        total = inputs.sum(dtype=torch.float32) if floating else None  # type: ignore[union-attr]
        finite = torch.isfinite(total) if total is not None else loss.new_ones((), dtype=torch.bool)
        self._finite.append(finite.to(loss.device).reshape(1))  # on the loss's device already
        self._steps.append(step)
        if len(self._pending) >= self.fold_every:
            self._pending, self._finite = [torch.cat(self._pending)], [torch.cat(self._finite)]

    def read(self) -> list[tuple[int, float]]:
        """Move the pending losses to the host (one transfer); return the whole series."""
        if self._pending:
            values = torch.cat(self._pending).float().cpu().tolist()
            finite = torch.cat(self._finite).cpu().tolist()
            self.series.extend(zip(self._steps, values, strict=True))
            bad = [s for s, ok in zip(self._steps, finite, strict=True) if not ok]
            self.bad_inputs = (self.bad_inputs + bad)[:16]
        self.drop()
        return self.series

    def drop(self) -> None:
        """Forget the pending losses (ranks other than zero never read them)."""
        self._pending, self._finite, self._steps = [], [], []


def first_nonfinite(series: Sequence[tuple[int, float]]) -> int | None:
    """The first step whose loss is not finite, else None."""
    return next((step for step, value in series if not math.isfinite(value)), None)


def start_loss(finite: Sequence[float]) -> float:
    """The untrained model's loss: the median of the first ``SMOOTH`` finite losses.

    What ``progress`` measures from: one batch is a noisy start. Not where that median is
    ``BLOWN_UP`` x the first loss: the first steps blew up, and the first loss is the
    start (held-out hunt 118: Adam 0.3 took mobilenet_v2 2.33 -> 135 at step 1, down to
    1.97 later, told "the loss fell 97% since the first step").

    Example::

        >>> start_loss([2.7, 4.4, 5.1, 4.9, 5.4, 2.1]), start_loss([2.3, 584.0, 48.9, 2.3, 2.3])
        (4.9, 2.3)
        >>> start_loss([2.33, 135.0, 60.0, 31.0, 15.5, 3.2])
        2.33

    Nor where one of them is ``ONE_STEP`` x their median: held-out hunt 123's SGD at 150x
    for two steps read 2.29, 13.07, 2.88, 3.35, 3.29 and 2.45-2.9 after, with a layer
    dead: "the loss fell 20% since the first step", from a start of 3.29.

        >>> start_loss([2.29, 13.07, 2.88, 3.35, 3.29])
        2.29
    """
    head = finite[:SMOOTH]
    median = statistics.median(head)
    jumped = max(head) > ONE_STEP * median and median > finite[0]
    return finite[0] if median > BLOWN_UP * finite[0] > 0 or jumped else median


def progress(
    series: Sequence[tuple[int, float]], recent: int = SMOOTH, least: int = MIN_STEPS
) -> float | None:
    """``1 - loss now / loss at the start`` (medians of the last and first ``recent`` steps).

    The loss now is that of the last few steps: a window of 20 still held the flat
    start of a run that had just begun to learn (a Conv3d net at ln 3 for 15 steps,
    then down 35%, read as "stalled"). None before ``least`` (``MIN_STEPS``) optimizer steps
    with a finite loss (too early to tell: the first steps of a healthy run may barely move the
    loss). Steps, not losses: with gradient accumulation several losses share a step
    (held out, hunt 56: accumulating 4 batches of 8, a healthy CNN had 40 losses by step
    10, its loss down 2%, and a dense layer 45% silent since the start was told
    "learning has stalled"; down 46% by step 40, it reached 94.5%).

    Example::

        >>> progress([(i, 2.0) for i in range(10)] + [(10 + i, 0.5) for i in range(20)])
        0.75
        >>> round(progress([(i, 1.1) for i in range(15)] + [(15 + i, 0.7) for i in range(6)]), 2)
        0.36
    """
    finite = [v for _, v in series if math.isfinite(v)]
    if len({s for s, v in series if math.isfinite(v)}) < least:
        return None
    start, now = start_loss(finite), statistics.median(finite[-recent:])
    return 1.0 - now / start if start > 0 else None
