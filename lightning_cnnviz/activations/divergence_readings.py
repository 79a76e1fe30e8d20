"""What the run's own record says about a loss spike: a part of ``DivergenceReview``.

Nothing here knows about Lightning. ``SpikeReadings`` reads, for a spike the review
found, what ``divergence_causes.divergence_cause`` names: the learning rate's readings
(``rate_readings.py``), the probe accuracy held or lost through it (``spike_accuracy.py``),
the weight decay or dropout raised, a negative weight decay, a loss gone below 0 just
before it, a learnt loss at its chance level since, the one-step changes of
``loss_steps.py``, and a batch of NaN/Inf inputs where the loss first turned non-finite.
"""

from __future__ import annotations

import math
from typing import Any

from lightning_cnnviz.activations.divergence import SPIKE_OVER_START, UNLEARNT
from lightning_cnnviz.activations.divergence_settings import went_negative
from lightning_cnnviz.activations.early_spike import (
    blown_from_start,
    cooled,
    crawling,
    left_at_start,
    past_chance,
)
from lightning_cnnviz.activations.initial_scale import SANE
from lightning_cnnviz.activations.loss_steps import step_up, to_chance_at_once
from lightning_cnnviz.activations.loss_trace import SMOOTH, LossTrace
from lightning_cnnviz.activations.recovery import level_before, loss_now, recovered
from lightning_cnnviz.activations.spike_accuracy import (
    ACC_LOST,
    SpikeAccuracy,
    fell,
    learnt,
    learnt_well,
    lost,
)
from lightning_cnnviz.core.chance import at_chance
from lightning_cnnviz.core.raised_settings import decay_raised, dropout_raised, momentum_raised

__all__ = ["ANEW", "IN_FORCE", "LEARNT", "SpikeReadings"]

LEARNT = 0.5  # a loss below this share of ln K before a spike: the model had learnt
# ... or below this share where its probe accuracy was lost since: a slow learner (hunt 97:
# labels shuffled on a BN CNN at 0.59 ln K, told "the updates are too large" two logs late)
SLOW_LEARNT = 0.8
OWN_FELL = 0.8  # the model's own probe cross-entropy at most this share of it before a spike
REWEIGHED = 3.0  # ...while the loss returned grew this many times over it: weighted anew
HIGH_START = 1.5  # a first loss this many times ln K: "below the start" is no way back alone
ANEW = 0.8  # a loss below this share of ln K after a spike, at an unchanged rate: learning
IN_FORCE = 1.5  # a loss back within this many times its level before, under a jumped rate


class SpikeReadings(SpikeAccuracy):
    """Readings of a spike from the run's record (a part of ``DivergenceReview``).

    Uses the diagnosis's ``loss``, ``rates``, ``log_rates``, ``chance``, ``log_accs``,
    ``log_losses``, ``decays`` and ``dropouts``.
    """

    loss: LossTrace
    log_losses: list[tuple[int, float]]  # (step, probe cross-entropy) of the latest logs
    decays: tuple[float | None, float | None]  # decoupled weight decay a step: first log, now
    decay: tuple[float | None, float | None]  # now: decoupled decay a step, `weight_decay`
    dropouts: tuple[float | None, float | None]  # the model's highest dropout p: likewise
    momenta: tuple[float | None, float | None]  # SGD's momentum, Adam's first beta: likewise

    def _decay_raised(self) -> tuple[float, float] | None:
        """``(decay a step at the first log, now)`` where it rose to stall learning since."""
        return decay_raised(self.decays)

    def _decay_negative(self) -> tuple[float, float | None] | None:
        """``(weight_decay, its share of each weight a step)`` where the decay is negative now."""
        per_step, decay = self.decay
        if decay is None or decay >= 0:
            return None
        return decay, per_step

    def _dropout_raised(self) -> tuple[float, float] | None:
        """``(dropout p at the first log, now)`` where it rose to drop most outputs since."""
        return dropout_raised(self.dropouts)

    def _momentum_raised(self) -> tuple[float, float] | None:
        """``(momentum at the first log, now)`` where it rose to ``HIGH_MOMENTUM`` or more since."""
        return momentum_raised(self.momenta)

    def _own_loss_fell(
        self, spike: tuple[int, float, float, float], level: float | None
    ) -> tuple[float, float] | None:
        """``(the model's probe cross-entropy before the spike, now)`` where it fell.

        Fell: to ``OWN_FELL`` x its value at the last log before the spike (``ln K``, an
        untrained model's with sane logits, for a spike measured against the start with no
        log before it), while the loss returned grew ``REWEIGHED`` x over it (from its
        ``level`` before the spike, else its start). The loss rose, the model's own fell:
        its weight or its target changed, not the model (setups hunt 42: a loss weight
        ramped 0.1 -> 1 over the first 10 steps lifted it 0.23 -> 0.91, the probe's
        cross-entropy 2.28 -> 1.61, 86% val at the end; told as updates too large). Only at
        a rate not raised, as ``_accuracy_held``: a log between a rate jump and its spike
        reads a model already blown up (hunt 48: Adam x10 at step 176, the probe's
        cross-entropy 69.6 at 180 and 0.74 at 200, told "the target got harder").
        """
        k = self.chance[0] if self.chance else None
        if k is None or k < 2 or not self.log_losses or self.log_losses[-1][0] < spike[0]:
            return None
        if self._raised(spike[0]):
            return None
        before = [v for s, v in self.log_losses if s < spike[0]]
        then = before[-1] if before else math.log(k) if level is None else None
        now, base = self.log_losses[-1][1], level if level is not None else spike[3]
        if then is None or not 0 < now <= OWN_FELL * then or base <= 0:
            return None
        if now > SANE * math.log(k):
            return None  # fell from a blow-up, still one (hunt 88: 4e16 -> 9e12 "fell")
        acc = self.log_accs[-1][1] if self.log_accs else None
        if then > math.log(k) and now >= math.log(k) and acc is not None and not learnt(acc, k):
            # from above chance to above it still, at chance on the probe: a blow-up
            # settling, not a model that knows its images (hunt 114: SGD 1.5 under
            # clipping, 5.6 -> 2.8 on ln 10 = 2.3, told "the training target got harder")
            return None
        return (then, now) if spike[1] / now >= REWEIGHED * base / then else None

    def _own_level(self, spike: tuple[int, float, float, float]) -> bool:
        """Whether a spike from a start scaled down stays within the model's own level.

        A first loss under half the model's cross-entropy on the probe at the first log
        (at least ``ln K``) puts the start's bars below the level the loss comes back to as
        its weight grows: no spike under ``SPIKE_OVER_START`` x that level (hunt 47: loss
        weights ramped up from 0.1 over the first 5 and 50 steps told as a divergence at
        step 10, withdrawn by step 90). Only where that cross-entropy is sane (``SANE`` x
        ``ln K`` at most): a model blown up by the first log is no level (hunt 46: 2e21).
        """
        if self.chance is None or self.chance[0] < 2:
            return False
        k, own = self.chance
        if not own <= SANE * math.log(k):
            return False
        level = max(own, math.log(k))
        return 0 < spike[3] < level / 2 and spike[1] <= SPIKE_OVER_START * level

    def _came_back(
        self, series: list[tuple[int, float]], spike: tuple[int, float, float, float]
    ) -> bool:
        """``recovery.recovered``, and the probe accuracy not ``ACC_LOST`` below its value before.

        Held out (hunt 23): a GroupNorm net whose AdamW rate jumped 2e-3 -> 0.1 and stayed
        there had its loss back to 2.04 (below its start, 2.31; 1.5 before the spike) and
        was told "recovered", its probe accuracy 62% -> 31% and val 53% -> 27%. Under a
        jumped rate still in force (``_jumped_now``), back is within ``IN_FORCE`` x the level
        before: what the loss keeps above it is the raised rate's cost (hunt 92: a timm
        resnet10t at 30x its rate settled at 1.6x its level, val 53% -> 36%, "recovered").
        After a blow-up of the first steps, back only once the loss has learnt since
        (``early_spike.crawling``) or the probe's accuracy says so (``learnt_well``); where
        the rate that blew it up has ``cooled`` since, once ``past_chance``.
        """
        if not recovered(series, spike=spike) or self._no_better_than_chance(series, spike):
            return False
        rates, k = self._blow_up_rates(), self.chance[0] if self.chance else None
        if crawling(series, spike, rates) and not self._learnt_well():
            return False
        if cooled(rates) and blown_from_start(series, spike) and not past_chance(series, spike, k):
            return False  # (no crawl at a rate cooled since: back once past chance)
        level, loss = level_before(series, spike), loss_now(series)
        if self._jumped_now(spike) and level and loss is not None and loss > IN_FORCE * level:
            return False
        read = self._accuracy_around(spike)
        if read is None:
            return True
        k, then, now = read
        return not lost(then, now, k)

    def _learnt_well(self) -> bool:
        """Whether the probe's accuracy at the latest log is ``learnt_well`` (K known).

        And the model's own cross-entropy on the probe under ``UNLEARNT`` x ``ln K``
        (where read): better than an untrained model with sane logits. 10 of the 16 probe
        images right is no recovery alone: a Conv1d BN net under RMSprop 0.3 read 62.5% of
        4 classes at its own 1.67 (1.2 ln 4), its val accuracy 27% at the next validation.
        """
        k = self.chance[0] if self.chance else None
        if k is None or k < 2 or not self.log_accs or not learnt_well(self.log_accs[-1][1], k):
            return False
        own = self.log_losses[-1][1] if self.log_losses else None
        return own is None or own < UNLEARNT * math.log(k)

    def _learns_anew(self, series: list[tuple[int, float]]) -> tuple[float, float, float] | None:
        """``(probe accuracy before the told spike, now, the loss now)`` where it learns anew.

        After a spike told as a divergence and not come back near its level before, at an
        unchanged (or lowered) rate: the loss now under ``ANEW`` x ``ln K`` and the probe
        accuracy ``ACC_LOST`` above its value before the spike (``spike_acc``). The batches
        carry a target the model now learns, which updates that broke it do not give
        (held out, hunt 91: a curriculum adding 8 classes at step 90, 4e-4 -> 18 -> 2.3 =
        ln 10 for 50 steps, then 1.0 and val 78%: a standing "labels shuffled" problem).
        Labels remapped relearn the loss too, but the probe's accuracy falls.
        """
        k = self.chance[0] if self.chance else None
        now, before = loss_now(series), self.spike_acc
        if k is None or k < 2 or now is None or before is None or not self.log_accs:
            return None
        if self.spike is None or self._raised(self.spike[0]) is not False:
            return None
        step, acc = self.log_accs[-1]
        if step <= self.spike[0] or now >= ANEW * math.log(k) or acc < before + ACC_LOST:
            return None
        return before, acc, now

    def _no_better_than_chance(
        self, series: list[tuple[int, float]], spike: tuple[int, float, float, float]
    ) -> bool:
        """Whether a start far above chance makes "back below the start" mean nothing yet.

        The first loss over ``HIGH_START`` x ``ln K`` and the model's own probe
        cross-entropy at this log (after the spike) not under ``UNLEARNT`` x ``ln K`` (the
        margin ``recovered`` gives the start): no better than an untrained model with sane
        logits. Held out (hunt 88): torchvision's efficientnet_b0 on 4 classes started at
        5.6-6.3 (ln 4 = 1.39), spiked to 14-38, and was told "recovered: back to 4.13
        (below the start)" with its val loss never under ln 4 and val accuracy at chance.
        """
        k = self.chance[0] if self.chance else None
        finite = [v for _, v in series if math.isfinite(v)]
        if k is None or k < 2 or not finite or finite[0] <= HIGH_START * math.log(k):
            return False
        if not self.log_losses or self.log_losses[-1][0] < spike[0]:
            return False
        return not self.log_losses[-1][1] < UNLEARNT * math.log(k)

    def _left_at_chance(
        self, series: list[tuple[int, float]], spike: tuple[int, float, float, float]
    ) -> bool:
        """``early_spike.left_at_start``, the probe no better than chance where read."""
        return left_at_start(series, spike) and self._probe_unlearnt(spike)

    def _probe_unlearnt(self, spike: tuple[int, float, float, float]) -> bool:
        """Whether the model's probe cross-entropy now is not under ``UNLEARNT`` x ``ln K``.

        Read at this log, after ``spike``; True where either is not known.

        Held-out hunt 123: Adam 1e-2 on noisy MNIST, 2.28 -> 3.78 at step 1, read 1.997
        (8 of 16 probe images right) at step 20 with its training loss at 0.97x its start.
        """
        k = self.chance[0] if self.chance else None
        if k is None or k < 2 or not self.log_losses or self.log_losses[-1][0] < spike[0]:
            return True
        return not self.log_losses[-1][1] < UNLEARNT * math.log(k)

    def _at_chance(
        self, spike: tuple[int, float, float, float] | None, level: tuple[float, float] | None
    ) -> tuple[int, float, int] | None:
        """``(the spike's step, the loss now, K)``: a learnt loss at its chance level since.

        Learnt: below ``LEARNT`` x ``ln K`` before the spike, or ``SLOW_LEARNT`` with the
        probe accuracy fallen since (``spike_accuracy.fell``); at chance now
        (``core.chance``); at an unchanged (or lowered) rate. Units may die with it (labels
        drawn at random from step 120 under Adam silenced 58% of a dense layer).
        """
        k = self.chance[0] if self.chance else None
        if spike is None or level is None or k is None or k < 2:
            return None
        if self._raised(spike[0]) is not False:  # known, and not raised
            return None
        before, now = level
        if before >= SLOW_LEARNT * math.log(k) or not at_chance(now, k):
            return None
        if before >= LEARNT * math.log(k):  # a slow learner: where its probe accuracy fell
            read = self._accuracy_around(spike)
            if read is None or not fell(read[1], read[2], k):
                return None
        return spike[0], now, k

    def _steps(self, series: list[tuple[int, float]], spike: Any) -> tuple[Any, Any]:
        """``loss_steps``' one-step changes, at a known rate unchanged or steady (else None)."""
        k = self.chance[0] if self.chance else None
        moved = spike is not None and self._raised(spike[0]) is not False
        if spike is None or (moved and not self._rate_steady(spike[0])):
            return None, None
        return to_chance_at_once(series, spike[0], k), step_up(series, spike[0])

    def _epoch_start(self, at_once: tuple[int, float] | None) -> int | None:
        """The epoch a sudden blow-up's step began (not the first), else None."""
        if at_once is None or not at_once[0]:
            return None
        return self.loss.epoch_starts.get(at_once[0])

    def _bad_inputs(self, nonfinite: int | None) -> int | None:
        """The step of a batch with NaN/Inf inputs at or just before the first non-finite loss."""
        if nonfinite is None:
            return None
        return next((s for s in self.loss.bad_inputs if nonfinite - SMOOTH <= s <= nonfinite), None)

    def _negated(
        self,
        series: list[tuple[int, float]],
        spike: tuple[int, float, float, float] | None,
        nonfinite: int | None,
    ) -> tuple[int, float] | None:
        """``went_negative``, where the loss went below 0 since the last log before the blow-up.

        A loss offset below 0 on purpose (``CE - 2``) went there long before a blow-up a
        rate raised made (hunt 45: named as its cause).
        """
        went = went_negative(series)
        onset = spike[0] if spike is not None else nonfinite
        if went is None or onset is None:
            return went
        before = [s for s, _ in self.log_rates if s < onset]
        return went if not before or went[0] >= before[-1] else None
