"""The training loss step by step, and what its series says at a log.

Nothing here knows about Lightning. ``LossTrace`` keeps every training step's loss
(the detached tensor Lightning hands to ``on_train_batch_end``) on its device, with
no host sync, and moves them to the host in one transfer at a log (``read``). From
that series: ``first_nonfinite`` (the first NaN/inf step), ``start_loss`` and
``progress`` (how much the loss fell since the first steps: "learning stalled"), and
``LossLevels``, the readings the training-side rules take at each log, incrementally
(the losses since the last log only): whether the loss never left its chance level,
whether it is at a new low, how far it fell since the previous log. The spike rules
built on the same series live in ``divergence.py``.

Example::

    >>> trace = LossTrace()
    >>> for step, loss in enumerate([2.3, 2.2, 1.9, float("nan")]):
    ...     trace.add(step, torch.tensor(loss))
    >>> first_nonfinite(trace.read())
    3
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_cnnviz.core.chance import at_chance

__all__ = [
    "MIN_STEPS",
    "NEAR_LOW",
    "SMOOTH",
    "LossLevels",
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
NEAR_LOW = 1.1  # a loss this close to a low set since the last log is still at its lows
START_ABOVE = 0.15  # the first median this far above ln K at most is still at chance (the start)
CLEAR_FALL = 3.0  # ``fell_clearly``: 3 standard errors (one-sided: 0.13% of plateau logs)


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


class LossLevels:
    """Readings of the loss series at each log, incremental: only new losses are read.

    Example::

        >>> levels = LossLevels()
        >>> series = [(s, 2.3) for s in range(20)]
        >>> levels.at_chance(series, classes=10), levels.at_new_low(series)
        (True, True)
        >>> series += [(20 + s, 1.0) for s in range(10)]
        >>> levels.at_chance(series, classes=10), round(LossLevels.fall(series, 20), 3)
        (False, 0.565)
    """

    def __init__(self) -> None:
        # ``at_chance``: left it yet, losses read, the ones short of a full median
        self._left_chance, self._chance_seen, self._chance_rest = False, 0, []
        self._chance_started = False  # the first median read (the start, ``START_ABOVE``)
        # ``at_new_low``: the latest window, the lowest median, the latest median
        self._low: tuple[list[float], float, float | None] = ([], math.inf, None)
        self._low_seen = 0  # losses read by ``at_new_low``

    def at_chance(self, series: Sequence[tuple[int, float]], classes: int | None) -> bool:
        """Whether the loss never left its chance level ``ln K`` since the first step.

        Every ``SMOOTH``-step median within ``core.chance.AT_CHANCE`` of it (and ``4 * SMOOTH``
        losses at least). Shuffled training labels keep a CNN at 2.29-2.31 (ln 10 =
        2.303) while Adam silences half its dense layer; units killed by too large an
        update move the loss first (SGD 0.7: 2.30 -> 2.10; SGD 1.0 wanders 2.07-2.67). The
        first median may sit up to ``START_ABOVE`` above it: an untrained net's logits are
        not all 0 (hunt 96: 2.380 on 10 classes, a net on data without signal read as
        having left chance, its silent units then blamed on the update size).
        """
        if classes is None or classes < 2 or self._left_chance:
            return False
        fresh = [v for _, v in series[self._chance_seen :] if math.isfinite(v)]
        finite = self._chance_rest + fresh
        full = len(finite) - len(finite) % SMOOTH
        for i in range(0, full, SMOOTH):
            median = statistics.median(finite[i : i + SMOOTH])
            above = median / math.log(classes) - 1
            start = not self._chance_started and 0 <= above < START_ABOVE
            self._chance_started = True
            self._left_chance |= not (at_chance(median, classes) or start)
        self._chance_rest, self._chance_seen = finite[full:], len(series)
        return not self._left_chance and len(series) >= 4 * SMOOTH

    def near_low(self) -> bool:
        """Whether the latest median ``at_new_low`` read is within ``NEAR_LOW`` of its lowest.

        A loss held up by a floor sits at its lows; one that fell and rose back does not.
        """
        _, best, last = self._low
        return last is not None and last <= NEAR_LOW * best

    def at_new_low(self, series: Sequence[tuple[int, float]]) -> bool:
        """Whether the loss is at or near a new low set since the last log.

        A ``SMOOTH``-step median since the last log was the lowest yet, and the latest is
        within ``NEAR_LOW`` of it (or is the lowest itself); before ``SMOOTH`` losses, yes.

        Since the last log, not at this log's step alone: a loss falling fast but noisily
        (2.30 -> 1.23 in 35 steps) is often just above its low at the step a log lands on;
        a loss turning up (more than 10% over its low) is not.
        """
        window, best, last = self._low
        lowered = False
        for _, value in series[self._low_seen :]:
            if math.isfinite(value):
                window = [*window, value][-SMOOTH:]
                if len(window) == SMOOTH:
                    last = statistics.median(window)
                    lowered, best = lowered or last < best, min(best, last)
        self._low, self._low_seen = (window, best, last), len(series)
        if last is None:
            # fewer than SMOOTH losses: no low to be above yet. A ConvNeXt's layer scales
            # (1e-6 at init) let its gradients grow 5577x from the first step to the second
            # under Adam, with the loss 2.30 -> 2.42 -> 0.96: an early log is no explosion
            return True
        return last <= best or (lowered and last <= NEAR_LOW * best)

    @staticmethod
    def fell_clearly(series: Sequence[tuple[int, float]], previous: int) -> bool:
        """Whether the ``SMOOTH``-step median fell since the ``previous`` log beyond its noise.

        By more than ``CLEAR_FALL`` standard errors of the difference of two such medians,
        the noise read from the per-step losses on each side of that log (the median
        difference of neighbouring steps: a trend does not pass for noise; a loss that
        starts to learn wobbles more). A 100-class net leaving its chance level, 4.597 ->
        4.471 (2.7%: under ``gradients.FALLING``'s 3%; 3.6 standard errors, its losses
        wobbling 0.01 before and 0.06 after), is learning.

        Example::

            >>> flat = [(i, 2.3 + 0.02 * (-1) ** i) for i in range(40)]
            >>> LossLevels.fell_clearly(flat, 20)
            False
            >>> down = flat[:20] + [(20 + i, 2.1 + 0.02 * (-1) ** i) for i in range(20)]
            >>> LossLevels.fell_clearly(down, 20)
            True
        """
        sides = _sides(series, previous)
        if sides is None:
            return False
        before, after = sides
        then, now = statistics.median(before[-SMOOTH:]), statistics.median(after[-SMOOTH:])
        # each side's per-step noise from neighbouring steps' differences, so a trend does
        # not count as noise (|a - b| of two N(0, s^2) has median 0.954 s); a median of
        # SMOOTH values has 1.25x the standard error of their mean
        spread = [
            statistics.median(abs(b - a) for a, b in itertools.pairwise(side)) / 0.954
            for side in (before, after)
        ]
        error = 1.25 * math.hypot(*spread) / math.sqrt(SMOOTH)
        return then - now > CLEAR_FALL * error

    @staticmethod
    def fall(series: Sequence[tuple[int, float]], previous: int) -> float | None:
        """``1 -`` the ``SMOOTH``-step median loss now over that at the ``previous`` log.

        None without ``SMOOTH`` finite losses on each side of the previous log.
        """
        sides = _sides(series, previous)
        if sides is None:
            return None
        then, now = (statistics.median(side[-SMOOTH:]) for side in sides)
        return 1.0 - now / then if then > 0 else None


def _sides(
    series: Sequence[tuple[int, float]], previous: int
) -> tuple[list[float], list[float]] | None:
    """The finite losses of up to ``4 * SMOOTH`` steps before the ``previous`` log and after it.

    A log at step ``L`` has the losses of the steps before ``L``. None without ``SMOOTH``
    of them on each side.
    """
    cut = bisect.bisect_left(series, previous, key=lambda item: item[0])
    before = [v for _, v in series[max(0, cut - 4 * SMOOTH) : cut] if math.isfinite(v)]
    after = [v for _, v in series[cut:][-4 * SMOOTH :] if math.isfinite(v)]
    return None if len(before) < SMOOTH or len(after) < SMOOTH else (before, after)
