"""Whether it is too soon to call a model at chance "not learning".

Nothing here knows about Lightning. ``levels.not_learning`` waits at chance from the
start within the run's first steps (``early``), while a warm-up still raises the learning
rate (``warming_up``) unless it outlasts the run (``warmup_outlasts``), and while the
val probe loss still falls below its chance level (``falling``). Thresholds and why:
``docs/diagnosis.md``.

Example::

    >>> early(Evaluation(20, 19, run_share=0.5)), early(Evaluation(20, 19, run_share=0.1))
    (False, True)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.small_steps import tiny_steps
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = [
    "FALLING",
    "FALLING_STEPS",
    "FIRST_STEPS",
    "SHORT_RUN_STEPS",
    "START_SHARE",
    "START_STEPS",
    "early",
    "falling",
    "fell",
    "held_streak",
    "stalled",
    "stalled_streak",
    "waits",
    "warming_up",
    "warmup_outlasts",
    "young",
]


FIRST_STEPS = 40
"""Optimizer steps before a model at chance from the start is "not learning" (a plateau)."""
SHORT_RUN_STEPS = 10  # ...or, in a run planned shorter, this many and half the run


def early(e: Evaluation) -> bool:
    """Whether ``e`` is within the run's first steps, too early to call a plateau.

    The first ``FIRST_STEPS`` optimizer steps; a run planned for fewer than twice that
    waits for half its length (at least ``SHORT_RUN_STEPS``): held out, whole-set batches
    with SGD 0.01 took 40 steps in 40 epochs, ended at 96% of ln 10 and "no problems
    found" (the bar was never passed).

    Example::

        >>> early(Evaluation(20, 19, run_share=0.5)), early(Evaluation(20, 19, run_share=0.1))
        (False, True)
    """
    if e.step >= FIRST_STEPS:
        return False
    half = e.run_share is not None and e.run_share >= 0.5
    return not (half and e.step >= SHORT_RUN_STEPS)


START_SHARE = 0.25
"""The share of a planned run whose at-chance start is a note, not yet a problem."""
START_STEPS = 200  # ... in a run of unknown length, these many steps


def young(e: Evaluation) -> bool:
    """Whether ``e`` is in a run's first ``START_SHARE`` (unknown length: ``START_STEPS``).

    A flat start at chance can last that long in a healthy run: held out (hunt 56),
    five runs validated every 10-20 steps (a Conv3d net under focal loss, batches of 4,
    strong augmentation with label smoothing, faint classes, bf16 with MixUp) sat at
    chance for 40-120 steps of 300-500 and learnt (39-97%), each told "not learning" as a
    problem first. Told as a note there, a problem once the run is past it.

    Example::

        >>> young(Evaluation(40, 0, run_share=0.13)), young(Evaluation(94, 1, run_share=0.5))
        (True, False)
        >>> young(Evaluation(250, 3))  # unknown length
        False
    """
    if e.run_share is not None:
        return e.run_share < START_SHARE
    return e.step < START_STEPS


def warming_up(evs: Sequence[Evaluation]) -> bool:
    """Whether the learning rate rose since the evaluation before the latest, as a warm-up does.

    A warm-up ramps from the start: the rate never fell at an earlier evaluation.

    Example::

        >>> warming_up([Evaluation(11, 0, lr=0.015), Evaluation(22, 0, lr=0.029)])
        True
        >>> warming_up([Evaluation(11, 0, lr=0.05), Evaluation(22, 0, lr=0.05)])
        False
        >>> rates = (0.4, 0.045, 0.158)  # a warm restart: not a warm-up
        >>> warming_up([Evaluation(11 * i, 0, lr=lr) for i, lr in enumerate(rates)])
        False
    """
    rates = [e.lr for e in evs]
    if len(rates) < 2 or None in rates or evs[-1].cyclic_lr:  # a cycle's rise, no warm-up
        return False
    # never lower than at an earlier evaluation: a ramp from the start, not a cycle's or a
    # warm restart's rise (hunt 18: SGDR back at 0.158 after 0.045 read as a slow warm-up)
    ramp = all(b >= a * (1 - 1e-6) for a, b in itertools.pairwise(rates))  # type: ignore[operator]
    return ramp and rates[-1] > rates[-2] * (1 + 1e-6)  # type: ignore[operator]


def warmup_outlasts(e: Evaluation) -> bool:
    """Whether a rising learning rate cannot reach the rate set before the run ends.

    Extrapolated linearly from 0 at the start: at ``run_share`` of the run with the rate
    at a share ``r`` of ``lr_initial`` (the rate set, ``initial_lr``), the warm-up ends at
    ``run_share / r`` of the run; past 1, never within it. A one-cycle schedule's rises
    from ``lr_initial`` to ``lr_peak``, its ``max_lr``. Held out: ``LinearLR(
    start_factor=1e-4, total_iters=100000)`` in a 282-step run ended at 0.3% of the rate
    set; ``not_learning`` waited for it at chance on three seeds. Unknown (no planned
    length, no rate): ``False``.

    Example::

        >>> warmup_outlasts(Evaluation(188, 1, lr=1.9e-6, lr_initial=1e-3, run_share=0.67))
        True
        >>> warmup_outlasts(Evaluation(22, 0, lr=0.029, lr_initial=0.05, run_share=0.1))
        False
        >>> one_cycle = dict(lr_initial=4e-4, lr_peak=0.01, run_share=0.5)
        >>> warmup_outlasts(Evaluation(96, 3, lr=4.1e-4, **one_cycle))  # barely moved
        True
        >>> warmup_outlasts(Evaluation(96, 3, lr=0.008, **one_cycle))
        False
    """
    lr, share = e.lr, e.run_share
    # a one-cycle schedule rises from its `initial_lr` to its `max_lr` (hunt 33: stepped
    # per epoch, or over 100x the run's steps, it stayed near its start, unsaid)
    start, target = (e.lr_initial, e.lr_peak) if e.lr_peak else (0.0, e.lr_initial)
    if not lr or not target or share is None or lr <= 0 or lr >= target or e.cyclic_lr:
        return False
    if start is None or start >= target:
        return False
    return share * (target - start) / max(lr - start, 1e-12 * target) > 1.0


FALLING = 0.01
"""A val probe loss below ``ln K`` at two evaluations in a row, falling this share of
``ln K`` from one to the next, is learning under way, however slowly: not flat. SGD at
1e-5 moved it 2.295 -> 2.294 (ln 10 = 2.303), an 8-layer Tanh CNN in its flat start
2.303 -> 2.294. A fall from above ``ln K`` (a class prior unlearnt) is not counted."""
FALLING_STEPS = 50
"""...over evaluations this many steps apart (those runs' epochs); over fewer, that share
of it, in the first half of a run. Held out (hunt 54): validated every 10 steps, a CNN in
its flat start fell 0.4-0.6% of ln 4 an evaluation, was told "not learning" at step 40
of 400 and reached 100% by step 70. Past half the run a slow fall no longer defers (held
out: whole-set batches, 40 steps in all, fell 0.065% of ln 10 a step, ending at 96%)."""


def fell(before: float | None, now: float | None) -> float | None:
    """The share of ``before`` that ``now`` is below it (``None``: not comparable).

    Example::

        >>> fell(0.4, 0.2), fell(None, 0.3)
        (0.5, None)
    """
    if before is None or now is None or not (finite(before) and finite(now)) or before <= 0:
        return None
    return 1.0 - now / before


def waits(evs: Sequence[Evaluation]) -> bool:
    """Whether a streak ending at ``evs[-1]`` is too soon to call.

    The run's first steps, or a warm-up still raising the rate that ends within the run.

    Example::

        >>> waits([Evaluation(20, 0, run_share=0.1)]), waits([Evaluation(200, 2, run_share=0.5)])
        (True, False)
    """
    now = evs[-1]
    return early(now) or (warming_up(evs) and not warmup_outlasts(now))


def falling(evs: Sequence[Evaluation]) -> bool:
    """Whether the val probe loss, below ``ln K``, fell ``FALLING`` x ``ln K`` since the last.

    Scaled down where evaluations are under ``FALLING_STEPS`` apart in the first half of
    the run (``run_share``; unknown: the first half).

    Example::

        >>> def ev(loss):
        ...     return Evaluation(0, 0, probe_loss_val=loss, classes=2.0)
        >>> falling([ev(0.69), ev(0.67)]), falling([ev(0.69), ev(0.688)])
        (True, False)
        >>> falling([ev(0.9), ev(0.6)])  # from above ln 2 = 0.693
        False
        >>> dense = [Evaluation(s, 0, probe_loss_val=v, classes=4.0) for s, v in ((30, 1.379),
        ...                                                                    (40, 1.371))]
        >>> falling(dense)  # 0.6% of ln 4 in 10 steps
        True
    """
    if len(evs) < 2 or not evs[-1].classes or evs[-1].classes < 2:
        return False
    before, now = evs[-2].probe_loss_val, evs[-1].probe_loss_val
    if not (finite(before) and finite(now)):
        return False
    chance = math.log(evs[-1].classes)
    apart, young = evs[-1].step - evs[-2].step, (evs[-1].run_share or 0.0) < 0.5
    share = FALLING * (min(1.0, apart / FALLING_STEPS) if apart > 0 and young else 1.0)
    return before < chance and before - now > share * chance  # type: ignore[operator]


def stalled(
    first: Evaluation, now: Evaluation, figures: dict, young_note: bool = True, early: bool = False
) -> Verdict:
    """A ``not_learning`` verdict from ``first`` to ``now``: a note while the run is young.

    The rules read without class labels (the loss alone, one answer, the targets' mean,
    one output) tell a problem only past the run's start (``young``), unless the updates
    are tiny (``small_steps.tiny_steps``) or not ``young_note``; ``early``: a note anyway.

    Example::

        >>> stalled(Evaluation(40, 0), Evaluation(50, 0, run_share=0.1), {}).severity
        'note'
    """
    if early or (young_note and young(now) and not tiny_steps(now)):
        return Verdict("not_learning", first, now, None, {**figures, "early": True}, "note")
    return Verdict("not_learning", first, now, None, figures)


def _trailing(
    history: Sequence[Evaluation], test: Callable[[Evaluation], bool | None]
) -> tuple[list[Evaluation], int]:
    """The evaluations ``test`` could judge, and how many of the last ones it holds for."""
    evs = [e for e in history if test(e) is not None]
    streak = 0
    while streak < len(evs) and test(evs[-1 - streak]):
        streak += 1
    return evs, streak


STALLED = 0.05  # a loss fell this share since the evaluation before: learning


def stalled_streak(
    history: Sequence[Evaluation], test: Callable[[Evaluation], bool | None], patience: int
) -> tuple[list[Evaluation], Evaluation, bool] | None:
    """The last evaluations ``test`` holds at, ``patience`` or more, learning stalled.

    Neither the loss returned nor the val loss fell ``STALLED`` since the evaluation
    before, past the run's first steps (``waits``). ``(streak, before, from_start)``: the
    evaluations, the one before the latest (the latest itself at ``patience=1``), and
    whether ``test`` held at every one it judged; else ``None``.

    Example::

        >>> evs = [Evaluation(s, 0, returned_loss=0.2, run_share=s / 400) for s in (200, 300)]
        >>> stalled_streak(evs, lambda e: True, 2)[1].step
        200
    """
    found = held_streak(history, test, patience)
    if found is None:
        return None
    evs, before, _ = found
    now = evs[-1]
    falling = max(fell(before.returned_loss, now.returned_loss) or 0.0,
                  fell(before.val_loss, now.val_loss) or 0.0)  # fmt: skip
    return None if falling >= STALLED else found


def held_streak(
    history: Sequence[Evaluation], test: Callable[[Evaluation], bool | None], patience: int
) -> tuple[list[Evaluation], Evaluation, bool] | None:
    """``stalled_streak`` whatever the losses do: ``test`` held, past the run's first steps.

    Example::

        >>> evs = [Evaluation(s, 0, returned_loss=1 / s, run_share=s / 400) for s in (200, 300)]
        >>> held_streak(evs, lambda e: True, 2)[1].step
        200
    """
    judged, streak = _trailing(history, test)
    if streak < patience:
        return None
    evs = judged[-streak:]
    return None if waits(evs) else (evs, evs[-min(2, len(evs))], streak == len(judged))
