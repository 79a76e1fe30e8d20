"""When silent units hurt: the severity rules and their thresholds.

A dead unit (``dead.py``) is a problem only when it hurts (``dead_reason``): a ``LARGE``
share of a layer, a share rising ``FAST_RISE`` between logs while the loss is not falling
well (or once the model has learnt) and has not just set a new low, or a share at the
threshold while learning stalls. Otherwise it is a note (``dead_severity``). The words
and remedies are ``dead_words.py``'s.

Example::

    >>> dead_reason(0.8, None, 0.9), dead_severity(0.34, None, 0.9)
    ('large', 'note')
"""

from __future__ import annotations

__all__ = [
    "FAST_RISE",
    "FIRST_FALL",
    "GRAD_BURST",
    "LARGE",
    "LATE",
    "MIN_UNITS",
    "SETTLED",
    "SLOW",
    "STALLED",
    "dead_reason",
    "dead_severity",
    "lifted",
]


GRAD_BURST = 10.0
"""The gradient's level this many times its first reading, in a model at chance: the units
died of too large updates, not of the data (hunt 25: a 12-layer plain ReLU net under SGD
0.1, momentum 0.9, its gradients 20-60x their first level at step 30, 81% of a layer dead
at step 60, was told to check its labels; at lr 0.01 it learnt, then diverged)."""


LARGE = 0.75  # a layer this silent has lost most of its width: a problem whatever the loss
FAST_RISE = 0.2  # dead share up this much since the last log while the loss is not falling well
STALLED = 0.2  # the loss fell less than 20% since the first steps: learning has stalled
SLOW = 0.3  # the reference model has fallen 45% by step 25 (Adam 1e-3)
LATE = 0.6  # the loss has fallen this much: units dying now are no early-training transient
SETTLED = 40  # ...once the run is past this many steps (as `not_learning` waits from the start)
MIN_UNITS = 4  # fewer dead units (or fewer newly dead) hurt no layer: 2 of a squeeze-excite's 8
FIRST_FALL = 0.5  # at the first log (no log before it to fall from), a loss this far below
# its start is falling (hunt 69: a 3136 -> 256 dense head 77% dead at step 27 under SGD
# with momentum, the loss 75-80% down and 61% val, told "large", withdrawn at the next log)
SMALL_LAYER = 16  # a layer this narrow (a squeeze-excite bottleneck) is a LARGE problem only
# while the loss is not falling well: 6 of 8 SE units silent on a healthy mobilenetv3


def dead_reason(
    fraction: float,
    before: float | None,
    progress: float | None,
    dead: int | None = None,
    threshold: float = 0.25,
    falling: bool = False,
    settled: bool = True,
    squeezed: bool = False,
) -> str | None:
    """Why dead units hurt: ``"large"``, ``"rising"``, ``"stalled"``, or None (they do not).

    Hurt: a ``LARGE`` share of the layer (the loss not falling); or the share rose by
    ``FAST_RISE`` since the last log while the loss is not falling well (``progress <
    SLOW``) or once the model has learnt (``progress >= LATE``: a late collapse, not the
    transient of the first steps in which Adam silences some dense units); or the share is
    at ``threshold`` while learning stalled (``progress < STALLED``: a share below the
    threshold, 17% of a layer in the slow start of a healthy run, hurts nothing).
    ``progress`` (``1 - loss now / loss at the start``) None means unknown: only the share
    decides. With ``dead`` (the count of dead units) known, fewer than ``MIN_UNITS`` dead,
    or a rise of fewer than ``MIN_UNITS`` units, is never a problem: in a tiny layer (a
    squeeze-excite bottleneck of 8 units) one or two units are a large share and harm
    nothing; and a layer narrower than ``SMALL_LAYER`` is a ``LARGE`` problem only while the
    loss is not falling well. ``falling``: the loss fell to a new low since the last log
    (``gradients.FALLING``): the silent units did not stop learning, so they are neither
    ``"large"``, ``"rising"`` nor ``"stalled"`` (a dense layer after a flatten loses 30-45%
    of its units in the first 40 steps of a fast SGD run, 75% under SGD 0.1 with warm
    restarts on its way to 98% val accuracy, a slow-starting Conv3d net 64% of a layer,
    while the loss falls 14-80% between the logs); units silenced by a plant or by too large
    an update show in a loss that rises or stays flat (``configs/dead_relu.yaml``: -0.4%
    between its logs). ``settled``: the run is past its first ``SETTLED`` steps; a rise
    before them is no late collapse, however far the loss fell (a 99:1 binary task is at
    0.01 by step 10: a dense layer 7% -> 51% dead at step 20 on its way to learning the
    rare class). ``squeezed``: a squeeze-excite or attention bottleneck (its maps pooled
    to one position, its units weigh channels through a gate) is judged by the loss alone:
    ``"large"`` as a small layer, never ``"rising"`` (held out, hunts 25 and 29: CBAM's
    and GhostNet's SE units 30% -> 55% silent on healthy runs, told as problems).
    The diagnosis reads ``falling`` as a loss that fell ``gradients.FALLING`` since the
    last log, a new low or not (held out, hunt 66: a 3136 -> 256 dense head 78-85% dead at
    steps 20-40 under SGD with momentum while the loss went 2.39 -> 0.99 -> 0.68, just
    above its noisy low, told "large"; hunt 67: a conv 0% -> 22-36% dead at step 60 with
    the loss 90% down, told "rising"; both runs reached 96-97% val).

    Example::

        >>> dead_reason(0.8, None, 0.9), dead_reason(0.4, 0.1, 0.25), dead_reason(0.28, None, 0.03)
        ('large', 'rising', 'stalled')
        >>> dead_reason(0.17, 0.05, 0.01) is None  # under the threshold, not rising fast
        True
        >>> [dead_reason(0.45, 0.16, p, falling=True) for p in (0.79, 0.17)]  # learning goes on
        [None, None]
        >>> dead_reason(0.55, 0.3, 0.75, dead=26), dead_reason(0.55, 0.3, 0.75, 26, squeezed=True)
        ('rising', None)
    """
    if dead is not None and dead < MIN_UNITS:
        return None
    small = squeezed or (dead is not None and fraction > 0 and dead / fraction < SMALL_LAYER)
    if (
        fraction >= LARGE
        and not falling
        and not (small and progress is not None and progress >= SLOW)
    ):
        return "large"
    if progress is None:
        return None
    rising = before is not None and fraction - before >= FAST_RISE
    if rising and dead is not None and fraction > 0:
        rising = (fraction - before) * dead / fraction >= MIN_UNITS - 0.5  # type: ignore[operator]
    if (
        rising
        and not squeezed
        and not falling
        and (progress < SLOW or (progress >= LATE and settled))
    ):
        return "rising"
    return "stalled" if progress < STALLED and fraction >= threshold and not falling else None


def dead_severity(
    fraction: float,
    before: float | None,
    progress: float | None,
    dead: int | None = None,
    threshold: float = 0.25,
    falling: bool = False,
) -> str:
    """``"problem"`` when dead units hurt (``dead_reason``), else ``"note"``.

    Example::

        >>> dead_severity(0.34, None, 0.9), dead_severity(0.34, None, 0.05)
        ('note', 'problem')
        >>> dead_severity(0.4, 0.1, 0.25), dead_severity(0.8, None, 0.9)
        ('problem', 'problem')
        >>> dead_severity(0.5, 0.0, 0.45), dead_severity(0.5, 0.0, 0.85)  # early vs late
        ('note', 'problem')
        >>> dead_severity(0.625, 0.375, 0.9, dead=5), dead_severity(0.125, None, 0.05, dead=1)
        ('note', 'note')
        >>> dead_severity(0.75, 0.62, 0.7, dead=6), dead_severity(0.75, 0.62, 0.1, dead=6)
        ('note', 'problem')
    """
    reason = dead_reason(fraction, before, progress, dead, threshold, falling)
    return "note" if reason is None else "problem"


def lifted(progress: float | None, learnt: float | None) -> float | None:
    """``progress`` as the rules judge it: ``SLOW`` at least where the probe ``learnt`` well.

    ``learnt``: the probe's accuracy where it is far past chance
    (``probe_learning.probe_learnt``), else None. A loss with a floor above zero (label
    smoothing 0.9 on 3 classes: at most 0.9% below its start) reads as a stall however well
    the model learns; its accuracy says learning goes on. Not past ``SLOW``: a "late
    collapse" (``LATE``) is read from the loss alone. None stays None (too early to tell).

    Example::

        >>> lifted(0.02, 0.94), lifted(0.02, None), lifted(0.8, 0.94), lifted(None, 0.94)
        (0.3, 0.02, 0.8, None)
    """
    if progress is None or learnt is None:
        return progress
    return max(progress, SLOW)
