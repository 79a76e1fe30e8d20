"""The val-loss curve rule: overfitting.

Nothing here knows about Lightning. Each rule reads the list of ``Evaluation`` s
(one per validation, oldest first) and returns a ``Verdict`` (``verdict.py``) when its failure is
present *now*, or ``None``. Memorisation (val accuracy falling while train accuracy
climbs) is ``memorisation.py``. Rules keep no state of their own: the detector
(``detector.py``) compares each verdict with what it reported before to tell a new
finding from one that worsened or went away. The rules on where the probe's accuracies
stand are in ``levels.py`` (at chance, a train/val gap) and ``bn_levels.py`` (eval mode
below batch statistics). Thresholds and why: ``docs/diagnosis.md``.

Example::

    >>> vals = [2.0, 1.1, 0.8, 0.85, 0.9, 0.95, 1.0]
    >>> evs = [Evaluation(step=10 * i, epoch=i, train_loss=1.0 / (i + 1), val_loss=v)
    ...        for i, v in enumerate(vals)]
    >>> v = overfitting(evs)
    >>> v.kind, v.since.epoch, v.detected.epoch, v.best.epoch, round(v.figures["rise"], 3)
    ('overfitting', 3, 6, 2, 0.25)
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_cnnviz.overfitting.chance_levels import accuracy_read, scores_elsewhere, stuck
from lightning_cnnviz.overfitting.curves import LOCAL, episode, held_above, noise, prompt, wiggle
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = [
    "ACC_CLIMB",
    "DRAW_FALL",
    "HELD",
    "HELD_AFTER",
    "MEMORISED_FALL",
    "MIN_VAL_IMAGES",
    "STILL_LEARNING",
    "accuracy_climbed",
    "noise",
    "overfitting",
    "tiny_val",
]


MIN_VAL_IMAGES = 4
"""A val set under this many images carries no val curve (loss or accuracy; one image moves
the accuracy a third): 3 val images at 0% accuracy read 18% above their best and were
told "stop at epoch 0" (setups hunt 25); the overfitting, memorisation and train/val gap
checks do not run on it."""


def tiny_val(history: Sequence[Evaluation]) -> bool:
    """Whether the val set is too small to carry a val-loss curve (``MIN_VAL_IMAGES``)."""
    n = history[-1].val_images if history else None
    return n is not None and n < MIN_VAL_IMAGES


TRAIN_FALL = 0.9
# val accuracy this far above its value at the lowest val loss: the model is still learning,
# the val loss rose with its confidence (held out: a timm TinyNet under RAdam went 9.6% ->
# 41.4% val accuracy while its val loss rose 2.38 -> 3.24, told "stop at epoch 0")
STILL_LEARNING = 0.1
"""The train loss must be below this share of its value at the best val loss."""
# A step up that stays up on a plateau too noisy for the noise tests: every val loss since
# the best this share above it, for this many validations, while the train loss fell this
# many times since the best (the model memorises its training set and nothing carries
# over). Held out (hunt 18): 200 digits on a wide CNN, val loss 0.365 at its best, then
# 0.414, 0.448, 0.407, 0.427, 0.456, ... (+12-27% for ten validations) while the train
# loss fell 0.075 -> 0.0007, and nothing was said: the run's steep start put the noise
# at 0.04, and the plateau wanders 0.04.
HELD = 0.10
HELD_AFTER = 3
MEMORISED_FALL = 5.0
# ... or this many times where the held values' median stands ``STEP_UP`` above the best: a
# step that large is no plateau's wander (held out, hunt 88: 300 clean digits, val loss
# 0.436 at its best, then 0.754, 0.682, 0.704 (+61%) while the train loss fell 4.8x, told
# two validations later, when it reached 5x)
STEP_UP, STEP_UP_FALL = 0.5, 2.5
# ... and where the train loss fell this many times since the best, a held level is no
# return to where the curve stood before its best (``held_above``'s low draw): that stood
# on a model trained far less (held out, hunt 103: a multi-label net on 64 images, val
# BCE 0.361 at step 12 of its steep start, 0.295 at its best, then 0.407, 0.359, 0.361
# while the train loss fell 0.47 -> 0.041, told two validations late; hunt 104: 400
# digits, +17-24% above the best for ten validations as the train loss fell 78x, never)
DRAW_FALL = 10.0
# ... or, where the held values' median is this many times the best, a train loss still
# falling (``_still_falling``) is enough: no plateau wanders to twice its lowest (hunt 92: a
# CNN regressing a scalar on targets with noise sd 0.7, val MSE 0.027 at its best, then
# 0.049-0.14 for good while the train loss fell 0.48 -> 0.38, told 11 validations late)
DOUBLED = 2.0
# a train loss that fell at each validation since the best, by this share in all: still
# falling, however little (hunt 92: a U-Net on masks with 15% of their pixels flipped sits
# on the labels' noise floor, 0.406 -> 0.400 -> 0.392 -> 0.381, while its val loss stood
# 57% above its best; TRAIN_FALL told it 11 validations late)
STEADY_FALL = 0.05


def _train_reference(e: Evaluation | None) -> float | None:
    """The train loss at ``e`` that a later one must fall below to be still falling.

    The interval's mean, or its last steps' (``recent_loss``) where lower and the mean is
    the loss the steps return: a first epoch's mean holds its early descent (hunt 93:
    masks shuffled against their images, train loss flat at 1.02-1.05 from step 20, read
    as falling 10% from epoch 0's mean of 1.15, told "overfitting, stop at epoch 0").

    Example::

        >>> _train_reference(Evaluation(35, 0, train_loss=1.15, returned_loss=1.15,
        ...                             recent_loss=1.05))
        1.05
        >>> _train_reference(Evaluation(35, 0, train_loss=0.4, returned_loss=1.15,
        ...                             recent_loss=1.05))  # another loss logged: its mean
        0.4
    """
    if e is None or e.train_loss is None:
        return None
    same = e.returned_loss is not None and math.isclose(e.returned_loss, e.train_loss, rel_tol=0.01)
    if same and e.recent_loss is not None and 0 < e.recent_loss < e.train_loss:
        return e.recent_loss
    return e.train_loss


def overfitting(
    history: Sequence[Evaluation], tolerance: float = 0.05, patience: int = 2
) -> Verdict | None:
    """Val loss risen above its best beyond its own noise while the train loss still falls.

    The floor is ``max(tolerance * best, 0.01)``; the rise is confirmed by
    ``curves.prompt`` (one validation after the turn: the last ``patience`` values past
    the floor and twice the local noise, a step up from the values before them), by
    ``curves.episode`` (past three whole-run noise deviations, or a significant trend),
    or by ``curves.held_above`` (the last ``HELD_AFTER`` values each past the floor and
    their median ``HELD`` above the best, while the train loss fell ``MEMORISED_FALL`` x), the
    val probe past chance at the best (``chance_levels.stuck``), and the
    train loss (when logged) is below its value at the lowest val loss. The
    onset is the evaluation after the lowest val loss (``best``, what
    ``ModelCheckpoint`` keeps).
    """
    evs = [e for e in history if finite(e.val_loss)]
    if tiny_val(evs):
        return None
    vals: list[float] = [e.val_loss for e in evs]  # type: ignore[misc]
    if not evs:
        return None
    floor = max(tolerance * abs(min(vals)), _meaningless(evs[-1]))
    found = prompt(vals, patience, floor) or episode(vals, patience, floor)
    held = found is None
    if held:
        lowest = evs[min(range(len(vals)), key=vals.__getitem__)]
        draws = not _memorised(lowest, evs[-1], DRAW_FALL)
        held_floor = max(HELD * abs(min(vals, default=0.0)), floor)
        found = held_above(vals, HELD_AFTER, held_floor, floor, draws)
    if found is None:
        return None
    raw, rise, margin = found
    best, now = evs[raw], evs[-1]
    if not held and _spike_sized(vals, raw, rise, now):
        return None
    if held:
        median = statistics.median(vals[-HELD_AFTER:])
        step_up = median >= (1 + STEP_UP) * vals[raw] > 0
        doubled = median >= DOUBLED * vals[raw] > 0 and _still_falling(evs[raw:])
        if not doubled and not _memorised(best, now, STEP_UP_FALL if step_up else MEMORISED_FALL):
            return None
    # outputs that score no classes (an embedding): their argmax is no accuracy (hunt 101:
    # a triplet-loss overfit told "val accuracy 0.0% then, 3.9% now, its peak 11.7%")
    classed = not scores_elsewhere(now) and not scores_elsewhere(best)
    if classed and stuck(best):
        # at chance at its best: the model learnt nothing of the val images to overfit (held
        # out, hunts 63-64: a 100:1 long tail at a rate far too low, val loss 2.305 at its
        # best (ln 10 = 2.303), 2.465 later at 11-19% val accuracy, told "stop at epoch 0")
        return None
    if now.train_loss is not None and not _still_falling(evs[raw:]):
        return None  # training must still improve: else it is no overfitting
    accuracy = accuracy_read(now) and accuracy_read(best)
    if (
        accuracy
        and finite(best.val_accuracy, now.val_accuracy)
        and (
            now.val_accuracy - best.val_accuracy >= STILL_LEARNING  # type: ignore[operator]
        )
    ):
        return None  # the val loss rose with confidence while the model learnt: no overfit
    figures = {
        "best_epoch": best.epoch,
        "best_step": best.step,
        "best_val_loss": best.val_loss,
        "val_loss": now.val_loss,
        "rise": (now.val_loss - best.val_loss) / abs(best.val_loss) if best.val_loss else math.inf,
        "rise_abs": now.val_loss - best.val_loss,
        "noise": noise(vals),
        "margin": margin,
    }
    accs = [e for e in evs if e.val_accuracy is not None and math.isfinite(e.val_accuracy)]
    if accuracy and accs and now.val_accuracy is not None and best.val_accuracy is not None:
        peak = max(accs, key=lambda e: e.val_accuracy)  # type: ignore[arg-type,return-value]
        figures |= {"val_acc": now.val_accuracy, "val_acc_at_best": best.val_accuracy,
                    "peak_val_acc": peak.val_accuracy, "peak_epoch": peak.epoch}  # fmt: skip
    return Verdict("overfitting", evs[raw + 1], now, best, figures)


MEANINGLESS = 0.01
"""A val loss's rise under this (nats) means nothing: a model at 100% val accuracy whose val
loss wanders between 1e-4 and 3e-4 is no overfitting worth stopping for."""
MEANINGLESS_BLIND = 0.005
"""Real-valued targets have no nats: a rise under this share of what predicting the same
for every image scores (``Evaluation.blind_val_loss``) means nothing (0.01 nats is 0.4% of a
10-class chance loss). Held out (hunt 101): a U-Net denoiser's val MSE, best 0.0386 against
the mean image's 0.044, was told overfitting at +31%, 24 validations after it stayed 5% up."""


def _meaningless(e: Evaluation) -> float:
    """The rise of the val loss that means nothing (``MEANINGLESS``, ``MEANINGLESS_BLIND``)."""
    blind = e.blind_val_loss
    return MEANINGLESS if blind is None else MEANINGLESS_BLIND * blind


def _still_falling(since_best: Sequence[Evaluation]) -> bool:
    """Whether the train loss still falls, from the best val loss's evaluation to the last.

    Below ``TRAIN_FALL`` x its value at the best (``_train_reference``): by more than the
    wiggle of a flat train loss (a healthy BN CNN validated every quarter epoch read 0.070
    at its best val loss, then 0.078, 0.098, 0.067 while its eval-mode val loss jumped
    about; overfitting runs fall 30-80% by the onset). Or lower at each evaluation since
    the best, two or more, by ``STEADY_FALL`` in all: a train loss on a noise floor falls
    little, but steadily. Unknown (no train loss logged): falling.

    Example::

        >>> losses = (0.406, 0.400, 0.392, 0.381)
        >>> _still_falling([Evaluation(72 + 6 * i, i, train_loss=v) for i, v in enumerate(losses)])
        True
        >>> wiggle = (0.070, 0.068, 0.069, 0.065)  # 7% down, not at each evaluation
        >>> _still_falling([Evaluation(72 + 6 * i, i, train_loss=v) for i, v in enumerate(wiggle)])
        False
    """
    now = since_best[-1]
    if now.train_loss is None:
        return True
    losses = [e.train_loss for e in since_best if e.train_loss is not None]
    reference = _train_reference(
        next((e for e in since_best[:-1] if e.train_loss is not None), None)
    )
    if reference is not None and now.train_loss < TRAIN_FALL * reference:
        return True
    steady = len(losses) >= 3 and all(b < a for a, b in itertools.pairwise(losses))
    return steady and losses[-1] <= (1 - STEADY_FALL) * losses[0]


FITTED = 0.5  # a train loss above this share of the best val loss: training images not memorised


def _spike_sized(vals: Sequence[float], best_at: int, rise: float, now: Evaluation) -> bool:
    """Whether a rise no higher than the curve's recent spikes comes with nothing memorised.

    The rise at most the largest jump the ``LOCAL`` values up to the best made above their
    running lowest (``curves.wiggle``), while the train loss is above ``FITTED`` x the best
    val loss: no sign of a model fitting its training images past what carries over.
    Held out (hunt 91): a healthy GroupNorm CNN validated every quarter epoch went 0.379,
    0.451, 0.319 (its best), ... 0.373, 0.401 at a train loss of 0.26, and was told
    "overfitting, stop at epoch 8"; it fell to 0.173. A memorising model's small steady
    rise after a noisy descent is still told (train loss 0.01 against 0.28).
    """
    if now.train_loss is not None and now.train_loss <= FITTED * vals[best_at]:
        return False
    # up to the best only: what comes after it is the rise itself (hunt 92: a held rise
    # of 11-20% was read as its own wiggle and never told)
    return rise <= wiggle(vals[max(0, best_at - LOCAL) : best_at + 1])


def _memorised(best: Evaluation, now: Evaluation, fall: float = MEMORISED_FALL) -> bool:
    """Whether the train loss fell ``fall`` x or more since the best val loss.

    A loss at or below 0 (a Gaussian or Poisson NLL, whose offset the targets' units set)
    has no ratio to fall by: held out (hunt 114), a Gaussian NLL rising
    from -0.43 to -0.11 read "fell 5x" (-0.11 x 5 <= -0.43), and a noisy val loss was told
    overfitting "while train loss fell".

    Example::

        >>> _memorised(Evaluation(60, 5, train_loss=0.075), Evaluation(90, 8, train_loss=0.013))
        True
        >>> _memorised(Evaluation(60, 5, train_loss=0.075), Evaluation(90, 8))
        False
        >>> _memorised(Evaluation(126, 1, train_loss=-0.43), Evaluation(315, 4, train_loss=-0.11))
        False
    """
    if not finite(best.train_loss, now.train_loss) or min(best.train_loss, now.train_loss) <= 0:  # type: ignore[type-var]
        return False
    return now.train_loss * fall <= best.train_loss  # type: ignore[operator]


ACC_CLIMB = 0.01  # val accuracy this far above its value at the best val loss: climbed


def accuracy_climbed(figures: Mapping[str, Any]) -> int | None:
    """The epoch of the peak val accuracy, where it came after the lowest val loss and above.

    ``figures``: an overfitting verdict's (``best_epoch``, ``val_acc_at_best``,
    ``peak_val_acc``, ``peak_epoch``). Above: by ``ACC_CLIMB`` or more. The val loss
    then rose from over-confidence while the accuracy went on climbing: the weights to
    keep depend on which of the two the user needs.

    Example::

        >>> f = {"best_epoch": 3, "val_acc_at_best": 0.955, "peak_val_acc": 0.97, "peak_epoch": 12}
        >>> accuracy_climbed(f), accuracy_climbed(f | {"peak_val_acc": 0.96})
        (12, None)
    """
    if "peak_val_acc" not in figures or figures["peak_epoch"] <= figures["best_epoch"]:
        return None
    climb = figures["peak_val_acc"] - figures["val_acc_at_best"]
    return int(figures["peak_epoch"]) if climb >= ACC_CLIMB else None
