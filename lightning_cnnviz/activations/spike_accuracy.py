"""The probe accuracy around a loss spike: whether the model had learnt, held or lost it.

Nothing here knows about Lightning. ``learnt`` and ``lost`` read a probe accuracy against
the chance level ``1 / K``; ``SpikeAccuracy``, a part of ``SpikeReadings``, reads them from
the diagnosis's latest logs (``log_accs``), and the accuracy kept from before a told spike
(``spike_acc``).

Example::

    >>> learnt(0.625, 3), lost(0.625, 0.375, 3)
    (True, True)
"""

from __future__ import annotations

import math

from lightning_cnnviz.activations.rate_readings import RateReadings

__all__ = [
    "ACC_HELD",
    "ACC_LOST",
    "HARDER",
    "LEARNT_WELL",
    "SpikeAccuracy",
    "fell",
    "learnt",
    "learnt_well",
    "lost",
]

# probe accuracy no more than this below its value before a spike: held; over one image of
# the default 16 (hunt 47: a loss weight raised 10x under Adam, val 94% -> 96%, one probe
# image flipped, told as a divergence)
ACC_HELD = 0.07
ACC_LOST = 0.25  # ...this far below it (4 of the 16 probe images): the spike did harm that stays
# a probe accuracy this share of the way from chance to 100%: learnt whatever the loss says
# (the overfitting rules' "training images learnt"). Twice chance is no such bar on the 16
# probe images: held-out hunt 118's run read 25% (4 of 16) twice with its loss at ln 10
LEARNT_WELL = 0.5
HARDER = 3.0  # a harder target (smoothing, MixUp, noisier labels) keeps the loss below 3 ln K


def learnt(acc: float, k: int) -> bool:
    """Whether a probe accuracy over ``k`` classes shows a model that had learnt.

    Twice chance; with few classes, where twice chance is near or past perfect, a ninth of
    the way from chance to perfect (held out, hunt 95: a 3-class net at 62.5% before its
    biases were pushed to -3 and at chance after, told "came back on its own").

    Example::

        >>> learnt(0.2, 10), learnt(0.625, 3), learnt(0.55, 2)
        (True, True, False)
    """
    return acc >= min(2 / k, 1 / k + (1 - 1 / k) / 9)


def learnt_well(acc: float, k: int) -> bool:
    """Whether a probe accuracy over ``k`` classes is ``LEARNT_WELL`` of the way to 100%.

    Example::

        >>> learnt_well(0.25, 10), learnt_well(0.5625, 10), learnt_well(0.75, 2)
        (False, True, True)
    """
    return acc >= 1 / k + LEARNT_WELL * (1 - 1 / k)


def lost(then: float, now: float, k: int) -> bool:
    """Whether a model that had ``learnt`` lost ``ACC_LOST`` of its probe accuracy since.

    With fewer than 10 classes, of a share of ``ACC_LOST`` as large as the range above
    chance (hunt 95: 3 classes, 62.5% -> 37.5%, the chance level, was "not lost").

    Example::

        >>> lost(0.9, 0.7, 10), lost(0.625, 0.375, 3), lost(0.625, 0.5, 3)
        (False, True, False)
    """
    return learnt(then, k) and now < then - ACC_LOST * min(1.0, (1 - 1 / k) / 0.9)


def fell(then: float, now: float, k: int) -> bool:
    """Whether a model that had ``learnt`` ``lost`` its probe accuracy, or fell back to chance.

    Back to chance: within ``ACC_HELD`` (one probe image) of ``1 / k`` (hunt 97: 37.5% ->
    12.5% on 10 classes, exactly the 4 images ``lost`` asks more than).

    Example::

        >>> fell(0.375, 0.125, 10), fell(0.375, 0.3125, 10), fell(0.15, 0.1, 10)
        (True, False, False)
    """
    return learnt(then, k) and (lost(then, now, k) or now <= 1 / k + ACC_HELD)


class SpikeAccuracy(RateReadings):
    """The probe accuracy before a spike and now (a part of ``SpikeReadings``).

    Uses the diagnosis's ``chance``, ``log_accs``, ``spike``, ``spike_acc`` and the rate
    readings (``RateReadings``).
    """

    chance: tuple[int, float] | None  # (K, the probe's cross-entropy) from the first log
    log_accs: list[tuple[int, float]]  # (step, probe accuracy) of the latest logs
    spike: tuple[int, float, float, float] | None  # a finite spike told as a divergence
    spike_acc: float | None  # the probe accuracy at the last log before it

    def _accuracy_held(
        self, spike: tuple[int, float, float, float], level: tuple[float, float] | None
    ) -> tuple[float, float] | None:
        """``(probe accuracy before the spike, now)`` where it held (``ACC_HELD``), else None.

        Only after a learnt start (above twice chance before), at a rate not raised (and
        the caller asks that the loss not sit at its chance level, ``_at_chance``: blanked
        training images under accumulation, the probe still at 81% 40 steps on, were told
        "the training target got harder"): label smoothing or CutMix switched on at epoch
        2 lifted the training loss 0.25 -> 1.6 (a "divergence" told as updates too large)
        while the model's accuracy held at 95%.
        """
        read = self._accuracy_around(spike)
        if read is None:
            return None
        k, then, now = read
        if level is not None and level[1] > HARDER * math.log(k):
            return None  # no harder target scores that: the outputs' scale blew up (hunt 23)
        if self._raised(spike[0]) or not learnt(then, k) or now < then - ACC_HELD:
            return None
        return then, now

    def _accuracy_around(
        self, spike: tuple[int, float, float, float]
    ) -> tuple[int, float, float] | None:
        """``(K, probe accuracy at the last log before the spike, at this log)``, where known."""
        k = self.chance[0] if self.chance else None
        before = self._acc_before(spike)
        if before is None and spike == self.spike:
            before = self.spike_acc  # a told spike's, kept past the latest logs
        if k is None or before is None or not self.log_accs or self.log_accs[-1][0] < spike[0]:
            return None
        return k, before, self.log_accs[-1][1]

    def _acc_before(self, spike: tuple[int, float, float, float]) -> float | None:
        """The probe accuracy at the last of the latest logs before ``spike`` (else None)."""
        before = [a for s, a in self.log_accs if s < spike[0]]
        return before[-1] if before else None

    def _lost_at_raised_rate(self, spike: tuple[int, float, float, float]) -> bool:
        """Whether a learnt model lost accuracy at a rate raised past every rate used before.

        Lost: ``ACC_LOST`` of its probe accuracy; the rate still raised now. A second
        signal that confirms a smoothed rise at once (held out, hunt 48: Adam's rate raised
        10x four steps before a log, val 97.7% -> 65%, told one log later). A warm restart
        goes back to a rate used before, and a healthy one keeps the accuracy.
        """
        jumped, read = self._jumped_now(spike), self._accuracy_around(spike)
        if jumped is None or read is None:
            return False
        k, then, now = read
        used = [lr for s, lr in [*self.log_rates, *self.peak_rates] if s < spike[0]]
        return lost(then, now, k) and jumped[1] > max(used, default=0.0)
