"""Weight decay too strong: the training loss climbing back, or held far up, under it.

Nothing here knows about Lightning. Decoupled weight decay (AdamW, SGD) takes ``lr *
weight_decay`` off every weight each step (``decay_per_step``); at 1% a step or more
(``core.decay.DECAY_STALLS``) it undoes what the gradients build: the train loss climbs
back at an unchanged rate (``loss_climb.climb``), or stays far above zero with no low to
climb back from (``HELD_BACK``). Held out (hunt 11): a plain CNN under AdamW
``weight_decay=20`` at lr 1e-3 (2% a step) fell to a train loss of 0.73 by epoch 3, then
went 0.78, 0.87, 0.93, 0.92 with val accuracy 85% -> 47%, and the run ended "no problems
found". The same setting on a BatchNorm net did no harm (BatchNorm undoes the weights'
scale): its train loss climbed 0.22 -> 0.29 with train accuracy held at 99.6-100%.

Example::

    >>> rows = [(1.28, 0.001), (0.89, 0.001), (0.76, 0.001), (0.73, 0.001), (0.78, 0.001),
    ...         (0.87, 0.001), (0.93, 0.001)]
    >>> evs = [Evaluation(46 * (i + 1), i, train_loss=t, lr=lr, weight_decay=20.0,
    ...                   decay_per_step=lr * 20.0) for i, (t, lr) in enumerate(rows)]
    >>> v = decay_too_strong(evs)
    >>> v.best.epoch, round(v.figures["rise"], 2)
    (3, 0.27)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lightning_cnnviz.core.chance import at_chance
from lightning_cnnviz.core.decay import heavy_decay
from lightning_cnnviz.core.raised_settings import decay_raised
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.learning_remedies import LR_RAISED
from lightning_cnnviz.overfitting.loss_climb import (
    DROP,
    RISE,
    acc_fell,
    climb,
    climb_verdict,
    loss_doubled,
)
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = ["HELD_BACK", "SHRUNK", "STALLED", "decay_too_strong"]


def decay_too_strong(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Heavy decay, and the train loss ``RISE`` above its lowest for ``patience`` evaluations.

    The decay heavy now (``core.decay.heavy_decay``); the last ``patience`` train losses (the
    mean of the steps since the evaluation before, where ``training_step`` returns it)
    all more than ``RISE`` above the lowest one before them, at a learning rate no higher
    than it was then, and the train accuracy, where known, ``DROP`` below its value there
    (or the loss doubled, ``ALONE``: 5x at 4 points of train accuracy is no harmless climb).
    ``best`` is that lowest evaluation, ``since`` the one after it. Without such a climb,
    a decay raised since the evaluation before and already shrinking the weights
    (``_raised_now``), or a train loss held far above zero (``_held_back``).
    """
    now = history[-1]
    if not heavy_decay(now.decay_per_step, now.weight_decay):
        return None
    found = climb(history, patience, RISE)
    if found is None:
        return _raised_now(history) or _held_back(history, patience)
    best = found[0][found[1]]
    if acc_fell(best, now) is False and not loss_doubled(best, now):
        return None  # the loss climbs, the accuracy holds: no harm done
    if now.classes is not None and now.classes >= 2 and at_chance(now.train_loss, now.classes):  # type: ignore[arg-type]
        # a learnt loss back at its chance level: the model or its batches were changed; a
        # decay undoes a model slowly (hunt 72: biases set to -20 by a callback under SGD
        # momentum with `weight_decay=0.02`, 1% a step, were told as the decay's doing)
        return None
    return climb_verdict("weight_decay_too_strong", *found)


HELD_BACK = 0.25
"""Under decay of ``DECAY_STALLS`` or more, a train loss still this share of ``ln K`` at
each of the last evaluations, not falling (``STALLED``): the decay holds the model back.
Held out (hunt 25): AdamW ``weight_decay=20`` at lr 1e-3 (2% a step) held a plain CNN at
train losses of 0.76-1.0 (0.33-0.43 ``ln 10``; 75-83% val against 95%) on 3 seeds, under
the half of ``ln K`` this was, and the runs ended "no problems found"; a BatchNorm net
under the same decay sat at 0.22-0.29 (0.1 ``ln K``) at 99.6% train accuracy, harmed by
nothing."""
STALLED = 0.05


def _held_back(history: Sequence[Evaluation], patience: int) -> Verdict | None:
    """The train loss held far above zero under heavy decay, with no low to climb back from.

    The last ``patience`` train losses ``HELD_BACK`` x ``ln K`` or more and the latest
    not ``STALLED`` below the lowest before it: from the second evaluation (the first is
    a mean through the steep start, which a model learning under the decay leaves far
    behind; hunt 68: Adamax with an L2 of 0.5 at 2.28, 2.25, was told at the third, two
    validations after its onset). Not where an earlier evaluation got under that (``_got_low``)
    or the rate rose ``LR_RAISED`` x since the lowest (``_raised_since_low``): a loss that
    learnt and climbed back is ``climb``'s, or a raised rate's. Held out (hunt 19): AdamW
    at lr 1e-3 with ``weight_decay=50`` (5% of every weight a step) sat at train losses of
    1.60, 1.44, 1.55 (61-66% val against 96%), and the run ended "no problems".
    """
    evs = [e for e in history if e.train_loss is not None and math.isfinite(e.train_loss)]
    now = evs[-1] if evs else None
    if now is None or len(evs) < max(patience, 2) or now.classes is None or now.classes < 2:
        return None
    bar = HELD_BACK * math.log(now.classes)
    recent = evs[-patience:]
    lowest = min(e.train_loss for e in evs[:-1])  # type: ignore[type-var]
    if any(e.train_loss < bar for e in recent) or now.train_loss < (1 - STALLED) * lowest:  # type: ignore[operator]
        return None
    if any(_got_low(e, bar) for e in evs[:-1]) or _raised_since_low(evs):
        return None  # learnt, then climbed back (``climb``'s), or a raised rate's doing
    figures = {
        "weight_decay": now.weight_decay,
        "lr": now.lr,
        "decay_per_step": now.decay_per_step,
        "train_loss": now.train_loss,
        "chance_loss": math.log(now.classes),
        "held_back": True,
        "train_acc": now.train_accuracy,
        "val_acc": now.val_accuracy,
    }
    return Verdict("weight_decay_too_strong", recent[0], now, None, figures)


def _got_low(e: Evaluation, bar: float) -> bool:
    """Whether the train loss got under ``bar`` by ``e``: the decay did not hold it back.

    The interval's mean, or its last steps' (``recent_loss``) under half of it (a few
    steps' mean is noisier): a first epoch's mean holds its steep start. Held-out hunt
    124: Adam 1e-3 with an L2 of 0.05 learnt to a loss of ~0.2 by step 94 (92.5% val, as
    without the decay; epoch 0's mean above the bar), collapsed once the rate was raised
    300x at step 150, and was told "the training loss has stayed at 2.799 since epoch 0
    ... the decay holds the weights near zero".

    Example::

        >>> _got_low(Evaluation(94, 0, train_loss=0.7, recent_loss=0.2), 0.576)
        True
        >>> _got_low(Evaluation(94, 0, train_loss=1.6, recent_loss=1.5), 0.576)
        False
    """
    low = e.recent_loss is not None and math.isfinite(e.recent_loss) and e.recent_loss < bar / 2
    return (e.train_loss is not None and e.train_loss < bar) or low


def _raised_since_low(evs: Sequence[Evaluation]) -> bool:
    """Whether the rate now is ``LR_RAISED`` x the rate the lowest earlier train loss came at.

    The lower of each evaluation's mean and last steps' (``recent_loss``); the rate read
    there and at the evaluation before (the one read at it may be the next interval's, as
    in ``climb``). Then the loss held up is the raised rate's (held-out hunt 124: a loss
    of 0.41 over epoch 0's last steps, epoch 0's mean 1.09, up to 1.45 and 2.4 once the
    rate went 0.001 -> 0.3).

    Example::

        >>> evs = [Evaluation(60, 0, train_loss=1.09, recent_loss=0.41, lr=0.001),
        ...        Evaluation(120, 1, train_loss=1.45, recent_loss=3.4, lr=0.3)]
        >>> _raised_since_low(evs), _raised_since_low([evs[0], evs[0]])
        (True, False)
    """
    *earlier, now = evs
    lows = [
        min(v for v in (e.train_loss, e.recent_loss) if v is not None and math.isfinite(v))
        for e in earlier
    ]
    low = min(range(len(lows)), key=lows.__getitem__, default=None)
    rates = [e.lr for e in earlier[max(0, (low or 0) - 1) : (low or 0) + 1] if e.lr]
    return (
        low is not None and bool(rates) and now.lr is not None and now.lr >= LR_RAISED * min(rates)
    )


SHRUNK = 0.1
"""A decay raised since the evaluation before, and the trained weights' norm this share
smaller than there: the decay outweighs the gradients now, not in a while. A healthy run's
norm grows or drifts a few percent between evaluations (AdamW 0.05 at 1e-3 takes 0.005%
a step)."""


def _raised_now(history: Sequence[Evaluation]) -> Verdict | None:
    """A decay raised since the evaluation before, told at the first evaluation after it.

    ``patience`` evaluations of a climb wait for a train loss that the decay lifts slowly
    (held-out hunt 125: AdamW's `weight_decay` 1e-2 -> 5 at step 128, 1.5% of every
    weight a step; the first validation after it, at 160, had val accuracy 79% -> 10.6%,
    train accuracy 92-94% and the interval's mean loss only 22% up; told at 224). Where
    the evidence is already clear, at once: the decay a step raised since the evaluation
    before (``core.raised_settings.decay_raised``; not by a warm-up's or a cycle's plan,
    which move it with the rate), the weights' norm ``SHRUNK`` below its value there, the
    train loss (the interval's mean or its last steps') ``RISE`` above its lowest at a
    rate no higher, and the val accuracy fallen since (``_val_fell``) or the train
    accuracy (``loss_climb.acc_fell``).

    Example::

        >>> row = dict(lr=0.003, classes=10.0)
        >>> old = Evaluation(128, 3, train_loss=0.47, recent_loss=0.44, val_acc=0.79,
        ...                  train_acc=0.92, weight_decay=0.01, decay_per_step=3e-5,
        ...                  weight_norm=40.0, **row)
        >>> new = Evaluation(160, 4, train_loss=0.58, recent_loss=0.7, val_acc=0.11,
        ...                  train_acc=0.94, weight_decay=5.0, decay_per_step=0.015,
        ...                  weight_norm=30.0, **row)
        >>> v = decay_too_strong([Evaluation(96, 2, **row), old, new])
        >>> v.since.step, round(v.figures["shrunk"], 2), v.figures["raised_from"]
        (160, 0.25, 3e-05)
        >>> from dataclasses import replace
        >>> decay_too_strong([old, replace(new, weight_norm=39.0)]) is None  # 2.5%: not yet
        True
        >>> decay_too_strong([old, replace(new, warmup=True)]) is None  # the rate's plan
        True
    """
    if len(history) < 2:
        return None
    before, now = history[-2], history[-1]
    planned = now.warmup or before.warmup or now.cyclic_lr
    raised = None if planned else decay_raised((before.decay_per_step, now.decay_per_step))
    if raised is None or not before.weight_norm or now.weight_norm is None:
        return None
    shrunk = 1.0 - now.weight_norm / before.weight_norm
    evs = [e for e in history[:-1] if e.train_loss is not None and math.isfinite(e.train_loss)]
    losses = [v for v in (now.train_loss, now.recent_loss) if v is not None and math.isfinite(v)]
    if shrunk < SHRUNK or not evs or not losses:
        return None
    low = min(range(len(evs)), key=lambda i: evs[i].train_loss)  # type: ignore[arg-type,return-value]
    best = evs[low]
    # the rate the lowest loss came at, as in ``climb``: read there or at the one before
    rates = [e.lr for e in evs[max(0, low - 1) : low + 1] if e.lr is not None]
    if not rates or now.lr is None or now.lr > min(rates) * (1 + 1e-6):
        return None  # a rate raised too: not the decay's alone
    loss = max(losses)
    if loss <= (1 + RISE) * best.train_loss:  # type: ignore[operator]
        return None
    v_then, v_now = before.val_accuracy, now.val_accuracy
    if not _val_fell(before, now) and acc_fell(best, now) is not True:
        return None
    figures = {
        "weight_decay": now.weight_decay,
        "lr": now.lr,
        "decay_per_step": now.decay_per_step,
        "raised_from": raised[0],
        "shrunk": shrunk,
        "steps": now.step - before.step,
        "raised_after": [before.epoch, before.step],  # the evaluation before the raise
        "best_epoch": best.epoch,
        "best_train_loss": best.train_loss,
        "train_loss": loss,
        "rise": loss / best.train_loss - 1,  # type: ignore[operator]
        "train_acc": now.train_accuracy,
        "val_acc": v_now,
        "val_acc_before": v_then,
    }
    return Verdict("weight_decay_too_strong", now, now, best, figures)


def _val_fell(before: Evaluation, now: Evaluation) -> bool:
    """Whether the val accuracy fell ``DROP``, or 3 standard errors, from ``before`` to ``now``.

    Read in eval mode even where BatchNorm's running statistics lag (``acc_fell`` leaves
    such a fall out): a decay raised and shrinking the weights is what moves them faster
    than those statistics follow (``bn_cause``), so that fall is the decay's harm too.

    Example::

        >>> _val_fell(Evaluation(128, 3, val_acc=0.83), Evaluation(160, 4, val_acc=0.70))
        True
        >>> _val_fell(Evaluation(128, 3, val_acc=0.83), Evaluation(160, 4, val_acc=0.80))
        False
    """
    v_then, v_now = before.val_accuracy, now.val_accuracy
    if v_then is None or v_now is None:
        return False
    n = now.val_images or 0.0
    noise = 3.0 * math.sqrt(max(v_then * (1 - v_then), 1e-4) / n) if n else 0.0
    return v_now <= v_then - max(DROP, noise)
