"""The validation-side diagnosis rules: pure functions of the run's evaluations so far.

Nothing here knows about Lightning. Each rule reads the list of ``Evaluation`` s
(one per validation, oldest first) and returns a ``Verdict`` when its failure is
present *now*, or ``None``. Rules keep no state of their own: the detector
(``detector.py``) compares each verdict with what it reported before to tell a new
finding from one that worsened or went away. Thresholds and why:
``docs/diagnosis.md``.

Example::

    >>> vals = [2.0, 1.1, 0.8, 0.85, 0.9, 0.95, 1.0]
    >>> evs = [Evaluation(step=10 * i, epoch=i, train_loss=1.0 / (i + 1), val_loss=v)
    ...        for i, v in enumerate(vals)]
    >>> v = overfitting(evs)
    >>> v.kind, v.since.epoch, v.detected.epoch, v.best.epoch, round(v.figures["rise"], 3)
    ('overfitting', 3, 6, 2, 0.25)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_cnnviz.overfitting.curves import LOCAL, Z_AGREE, episode, noise, prompt
from lightning_cnnviz.overfitting.metrics import Evaluation

__all__ = [
    "Verdict",
    "bn_mismatch",
    "chance_band",
    "discordant",
    "memorisation",
    "noise",
    "not_learning",
    "overfitting",
    "part_threshold",
    "parted",
    "stuck",
]


@dataclass(frozen=True)
class Verdict:
    """What one rule concludes at the latest evaluation.

    Attributes:
        kind: ``"overfitting"``, ``"memorisation"``, ``"not_learning"`` or ``"bn_mismatch"``.
        since: the evaluation where the failure began (its onset).
        detected: the latest evaluation (the one the verdict speaks for).
        best: the evaluation to go back to (lowest val loss, highest val accuracy), if any.
        figures: the evidence, by name (see ``docs/diagnosis.md``).
        severity: ``"problem"``, or ``"note"`` once the failure went away.
    """

    kind: str
    since: Evaluation
    detected: Evaluation
    best: Evaluation | None
    figures: dict[str, Any] = field(default_factory=dict)
    severity: str = "problem"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def overfitting(
    history: Sequence[Evaluation], tolerance: float = 0.05, patience: int = 2
) -> Verdict | None:
    """Val loss risen above its best beyond its own noise while the train loss still falls.

    The floor is ``max(tolerance * best, 0.01)``; the rise is confirmed by
    ``curves.prompt`` (one validation after the turn: the last ``patience`` values past
    the floor and twice the local noise, a step up from the values before them) or by
    ``curves.episode`` (past three whole-run noise deviations, or a significant trend),
    and the train loss (when logged) is below its value at the lowest val loss. The
    onset is the evaluation after the lowest val loss (``best``, what
    ``ModelCheckpoint`` keeps).
    """
    evs = [e for e in history if _finite(e.val_loss)]
    vals: list[float] = [e.val_loss for e in evs]  # type: ignore[misc]
    # below 0.01 (nats) a rise is meaningless: a model at 100% val accuracy whose val
    # loss wanders between 1e-4 and 3e-4 is no overfitting worth stopping for
    floor = max(tolerance * abs(min(vals, default=0.0)), 0.01)
    found = prompt(vals, patience, floor) or episode(vals, patience, floor)
    if found is None:
        return None
    raw, _, margin = found
    best, now = evs[raw], evs[-1]
    if now.train_loss is not None:  # training must still improve: else it is no overfitting
        later = (e.train_loss for e in evs[raw:-1] if e.train_loss is not None)
        reference = next(later, None)
        if reference is not None and not now.train_loss < reference:
            return None
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
    return Verdict("overfitting", evs[raw + 1], now, best, figures)


def _memorising(evs: Sequence[Evaluation], patience: int) -> bool:
    """Whether val loss and train accuracy agree with a fall of val accuracy, now.

    Over the last ``patience`` validations the train accuracy climbed by more than a
    point and twice its own noise, and the latest val loss is above the lowest of the
    ones before it: the model fits more of its training labels while it gets more
    validation images wrong and is less sure of the right ones.
    """
    if len(evs) < patience + 2:
        return False
    train = [e.train_accuracy for e in evs]
    val = [e.val_loss for e in evs]
    if any(t is None for t in train[-patience - 1 :]) or not all(_finite(x) for x in val[-3:]):
        return False
    climb = train[-1] - train[-patience - 1]  # type: ignore[operator]
    known = [t for t in train if t is not None]
    if climb <= max(0.01, 2 * noise(known, LOCAL)):
        return False
    earlier = [x for x in val[:-1] if _finite(x)]
    return bool(earlier) and val[-1] > min(earlier[-LOCAL:])  # type: ignore[operator]


def memorisation(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Val accuracy falling from its peak while train accuracy climbs past it.

    The signature of noisy or memorised labels: unlike plain overfitting (val loss
    rises, val accuracy holds), the model now gets *more* val images wrong.
    The fall (floor: 2 points) is confirmed like ``overfitting``'s rise; when the val
    loss and the train accuracy agree (``_memorising``) the prompt check needs only one
    local noise deviation. The train accuracy must be more than a point above its value
    at the peak. With noisy labels the
    train accuracy (against those labels) may stay below the val accuracy for long: it
    climbing is the sign, its passing val accuracy comes later.
    """
    evs = [e for e in history if _finite(e.val_accuracy)]
    accs = [-e.val_accuracy for e in evs]  # type: ignore[operator]
    found = prompt(accs, patience, 0.02) or episode(accs, patience, 0.02)
    if found is None and _memorising(evs, patience):  # three signals agree: a lower bar
        found = prompt(accs, patience, 0.02, Z_AGREE, step_up=False)
    if found is None:
        return None
    raw, _, margin = found
    peak, now = evs[raw], evs[-1]
    train, train_then = now.train_accuracy, peak.train_accuracy
    if train is None or (train_then is not None and not train > train_then + 0.01):
        return None  # training does not improve either: a collapse, not memorisation
    figures = {
        "best_epoch": peak.epoch,
        "best_step": peak.step,
        "best_val_acc": peak.val_accuracy,
        "val_acc": now.val_accuracy,
        "drop": peak.val_accuracy - now.val_accuracy,  # type: ignore[operator]
        "train_acc": train,
        "train_acc_at_best": train_then,
        "noise": noise([e.val_accuracy for e in evs]),  # type: ignore[misc]
        "margin": margin,
    }
    return Verdict("memorisation", evs[raw + 1], now, peak, figures)


def chance_band(classes: int, probe_size: int) -> float:
    """Highest probe accuracy still at chance: ``1/K`` plus 3 binomial standard errors.

    Example::

        >>> round(chance_band(10, 128), 3)
        0.18
    """
    p = 1.0 / classes
    return p + 3 * math.sqrt(p * (1 - p) / max(1, probe_size))


def stuck(e: Evaluation) -> bool | None:
    """Whether the val probe is at chance (``None``: it cannot tell)."""
    if e.classes is None or e.classes < 2 or e.probe_acc_val is None:
        return None
    if not _finite(e.probe_loss_val):
        return True  # non-finite outputs: nothing is learnt any more
    k = int(e.classes)
    band = chance_band(k, int(e.probe_size or 0))
    if band > 1 / k + 0.5 * (1 - 1 / k):  # a probe too small to tell chance from learning
        return None
    return e.probe_acc_val <= band


def _trailing(
    history: Sequence[Evaluation], test: Callable[[Evaluation], bool | None]
) -> tuple[list[Evaluation], int]:
    """The evaluations ``test`` could judge, and how many of the last ones it holds for."""
    evs = [e for e in history if test(e) is not None]
    streak = 0
    while streak < len(evs) and test(evs[-1 - streak]):
        streak += 1
    return evs, streak


def not_learning(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The val probe at chance accuracy (or non-finite) for the last ``patience`` evaluations.

    From the start of the run, or after a collapse (an earlier evaluation above chance).
    The probe's own cross-entropy is compared with its chance level ``ln K``.
    """
    evs, streak = _trailing(history, stuck)
    if streak < patience:
        return None
    since, now = evs[-streak], evs[-1]
    before = evs[: len(evs) - streak]
    peak = max(before, key=lambda e: e.probe_acc_val or 0.0) if before else None
    k = int(now.classes or 0)
    figures = {
        "probe_acc": now.probe_acc_val,
        "probe_loss": now.probe_loss_val,
        "chance_acc": 1.0 / k,
        "chance_loss": math.log(k),
        "chance_band": chance_band(k, int(now.probe_size or 0)),
        "from_start": not before,
        "peak_acc_before": peak.probe_acc_val if peak else None,
        "non_finite": not _finite(now.probe_loss_val),
    }
    return Verdict("not_learning", since, now, peak, figures)


def discordant(e: Evaluation) -> float | None:
    """Share of the val probe right in one of its two passes only (``None``: not counted)."""
    return None if e.bn_only is None or e.eval_only is None else e.bn_only + e.eval_only


def part_threshold(
    acc: float, probe_size: float | None, discordant: float | None = None, gap: float = 0.0
) -> float:
    """The accuracy gap ``parted`` calls a mismatch: ``max(5 points, 3 standard errors)``.

    With ``discordant`` (the share of images right in one pass only) the error is the
    paired one, ``sqrt((discordant - gap^2) / n)``; without it, that of two independent
    accuracies near ``acc`` (larger: 18 points instead of 10 at 61% on 128 images).

    Example::

        >>> round(part_threshold(0.5, 128), 4), part_threshold(0.99, 128)
        (0.1875, 0.05)
        >>> round(part_threshold(0.61, 128, discordant=0.15, gap=0.11), 4)
        0.0985
    """
    n = max(1.0, probe_size or 0.0)
    if discordant is not None:
        spread = max(discordant - gap * gap, 1.0 / n)  # one flip at least
    else:
        spread = 2 * max(acc * (1 - acc), 0.01)
    return max(0.05, 3 * math.sqrt(spread / n))


def parted(e: Evaluation) -> bool | None:
    """Whether eval mode is far worse than batch statistics (``None``: not measured).

    Both passes read the same images, so the gap's standard error is the paired one
    (McNemar: from the images right in one pass only, ``part_threshold``). An
    evaluation whose batch-statistics pass the screen skipped (``bn_screen`` set,
    ``passes.py``: the gap cannot be near the threshold) counts as not parted.
    """
    if e.probe_acc_val is None:
        return None
    if e.probe_acc_bn is None:
        return None if e.bn_screen is None else False
    gap = e.probe_acc_bn - e.probe_acc_val
    # accuracy only: early in a run the running statistics always lag (a higher eval loss
    # at equal accuracy), which harms nothing and passes within a few dozen steps
    return gap > part_threshold(e.probe_acc_bn, e.probe_size, discordant(e), gap)


def bn_mismatch(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Eval-mode val probe far worse than the same probe with batch statistics.

    The running statistics BatchNorm uses in eval mode no longer match the batch
    statistics the model trains with: eval accuracy more than
    ``max(5 points, 3 paired standard errors)`` below (``parted``) for ``patience``
    evaluations (the losses are reported as evidence).
    """
    evs, streak = _trailing(history, parted)
    if streak < patience:
        return None
    now = evs[-1]
    figures = {
        "eval_acc": now.probe_acc_val,
        "batch_stats_acc": now.probe_acc_bn,
        "eval_loss": now.probe_loss_val,
        "batch_stats_loss": now.probe_loss_bn,
        "gap_acc": now.bn_gap_acc,
    }
    return Verdict("bn_mismatch", evs[-streak], now, None, figures)
