"""A learning rate decayed far too early: learning stalls part-way.

Nothing here knows about Lightning. A scheduler meant per epoch but stepped per batch
(``interval="step"`` with an epoch-sized ``step_size`` or milestones) or one that decays
this early cuts the rate 100x within the first steps: an Adam CNN on digits cut at step 40
of 184 stalled at 86-87% val accuracy (95% without the cut), and nothing was said. The
validation rules see a flat val curve, which is no failure by itself (a converged run is
flat too); with the rate 100x below its start in the first half of the run it is this.

Example::

    >>> evs = [Evaluation(20 * i, i, val_loss=v, lr=lr, lr_initial=2e-3, run_share=0.1 * i)
    ...        for i, (v, lr) in enumerate([(0.9, 2e-3), (0.6, 2e-5), (0.59, 2e-5), (0.6, 2e-5)])]
    >>> verdict = decayed_early(evs)
    >>> verdict.severity, verdict.since.step, verdict.figures["cut"]
    ('note', 20, 100.0)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = [
    "CUT",
    "EARLY",
    "GAIN",
    "LEARNT_ACC",
    "LEARNT_LOSS",
    "STOPPED",
    "cut",
    "decayed_early",
    "learnt",
]

CUT = 100.0  # the rate this many times below its start: decayed
EARLY = 0.5  # ... by this share of the run: early (cosine, step and one-cycle schedules
# reach 100x only in their last third or later)
GAIN = 0.02  # val loss improving by less than this per evaluation since: stalled
# ...this many times: no optimiser learns at that rate, which no schedule means this early
# (ReduceLROnPlateau stepped per batch on the batch loss: 0.05 -> 5e-9 by step 21, val
# accuracy frozen at 28% and 57% on two seeds): a problem
STOPPED = 1e4
# a model this accurate on both splits, or whose val loss fell this far below its first,
# has nothing left to learn: a plateau scheduler cutting the rate there (a loss of 4e-7
# no longer improves by its relative threshold) did no harm (setups hunt 81)
LEARNT_ACC = 0.995
LEARNT_LOSS = 1e-3


def cut(e: Evaluation, factor: float = CUT) -> bool:
    """Whether the rate of ``e`` is ``factor`` x or more below its start (and not negative).

    A negative rate is no decay: the optimiser climbs the loss (``ascent_setting.py``).
    """
    return bool(e.lr is not None and e.lr >= 0 and e.lr_initial and e.lr * factor <= e.lr_initial)


def learnt(first: Evaluation, now: Evaluation) -> bool:
    """Whether nothing is left to learn at ``now``.

    Every known accuracy at ``LEARNT_ACC`` or above, or the val loss ``LEARNT_LOSS`` x the
    first evaluation's (``first``) or below.

    Example::

        >>> learnt(Evaluation(0, 0, val_loss=2.3), Evaluation(90, 9, val_loss=4e-7))
        True
        >>> learnt(Evaluation(0, 0, val_loss=2.3), Evaluation(90, 9, val_loss=0.5, val_acc=1.0))
        True
        >>> learnt(Evaluation(0, 0, val_loss=2.3), Evaluation(90, 9, val_loss=0.5, val_acc=0.9))
        False
    """
    accuracies = [a for a in (now.val_accuracy, now.train_accuracy) if a is not None]
    if accuracies and min(accuracies) >= LEARNT_ACC:
        return True
    start, end = _val_loss(first), _val_loss(now)
    return start is not None and end is not None and 0 <= end <= LEARNT_LOSS * start


def _val_loss(e: Evaluation) -> float | None:
    return e.val_loss if e.val_loss is not None else e.probe_loss_val


def decayed_early(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The rate ``CUT`` x below its start by ``EARLY`` of the run, and val loss stalled since.

    The rate cut at every evaluation from the first one that found it cut (``since``),
    itself at most ``EARLY`` into the run (``run_share``; ``None``: unknown, no verdict),
    never rising since (a warmup from near zero is no decay), and ``patience``
    evaluations after it whose best val loss is less than ``GAIN`` per evaluation below
    the best before them, on a model with something left to learn (``learnt``). A note
    (a schedule may mean it), unless the rate is ``STOPPED`` x below its start: then
    learning has stopped, a problem told at the second evaluation that sees the cut,
    whether the val loss stalled or not.
    """
    streak = 0
    while streak < len(history) and cut(history[-1 - streak]):
        streak += 1
    # a rate STOPPED x below its start learns nothing: two evaluations show it is no warmup
    stopped = bool(history) and cut(history[-1], STOPPED)
    if streak < (2 if stopped else patience + 1):
        return None
    kept = history[-streak:]
    since, now = kept[0], kept[-1]
    if since.run_share is None or since.run_share > EARLY:
        return None
    if any(b.lr > a.lr for a, b in itertools.pairwise(kept)):  # type: ignore[operator]
        return None  # rising: a warmup from near zero, not a decay
    if learnt(history[0], now):
        return None
    losses = [_val_loss(e) for e in kept]
    if any(v is None for v in losses):
        return None
    waited = min(patience, len(losses) - 1)
    before, recent = min(losses[:-waited]), min(losses[-waited:])  # type: ignore[type-var]
    if not stopped and recent < before * (1 - GAIN * patience):
        return None  # still improving
    figures = {
        "lr": now.lr,
        "lr_initial": now.lr_initial,
        "cut": round(now.lr_initial / now.lr, 1) if now.lr else float("inf"),  # type: ignore[operator]
        "since_share": since.run_share,
        "best_loss_since": before,
        "val_loss": losses[-1],
        "val_acc": now.val_accuracy,
    }
    severity = "problem" if cut(now, STOPPED) else "note"
    return Verdict("lr_decayed_early", since, now, None, figures, severity=severity)
