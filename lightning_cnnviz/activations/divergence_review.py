"""The divergence part of ``TrainingDiagnosis``: told, confirmed, or ended as a note.

Nothing here knows about Lightning. ``DivergenceReview`` is a part of
``diagnose.TrainingDiagnosis`` (a mixin, as the monitors' parts are): at each log it
reads the loss series, the layers' non-finite counts and the parameters for a divergence
(``divergence.py``'s and ``recovery.py``'s rules), confirms a smoothed spike at the next
log, holds the units dying while a spike waits, and ends a finite divergence the run
came back from with a note (``spike_aftermath.py``); the finding it tells, with its
cause, is ``divergence_finding.py``'s; isolated non-finite losses the model
took no harm from are left out of the series it reads and told as a note
(``skipped_losses.py``). What it keeps across logs (``diverged``,
``spike``, ``transient``, ``pending``, ``nonfinite_told``) lives on the diagnosis, which
saves it in checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from lightning_cnnviz.activations.divergence import (
    LEARNT,
    is_jump,
    jump_to_chance,
    loss_spike,
)
from lightning_cnnviz.activations.divergence_finding import DivergenceFinding
from lightning_cnnviz.activations.early_spike import coming_back, jumped_at_start
from lightning_cnnviz.activations.episodes import Verdict
from lightning_cnnviz.activations.loss_trace import first_nonfinite
from lightning_cnnviz.activations.recovery import (
    level_and_now,
    level_before,
    loss_now,
    spike_seen,
    still_spiked,
)
from lightning_cnnviz.activations.recovery_words import (
    target_text,
    transient_text,
)
from lightning_cnnviz.activations.skipped_losses import SkippedLosses

__all__ = ["DivergenceReview"]


SETTLED = 10  # steps a learnt loss has sat at its chance level: confirmed at one log


class DivergenceReview(SkippedLosses, DivergenceFinding):
    """The divergence rules' review at one log (a part of ``TrainingDiagnosis``).

    Uses the diagnosis's ``_new``; what the run's record says of a spike is read by
    ``SpikeReadings`` (``divergence_readings.py``), the divergence it tells is written by
    ``DivergenceFinding`` (``divergence_finding.py``).
    """

    # (``diverged``, ``spike``, ``nonfinite_told``, ``_switch_before``: ``DivergenceFinding``'s)
    transient: int
    harder: int | None
    recurring: list[int]  # the steps of late spikes the run came back from
    pending: int | None
    rewrite: tuple[tuple[str, str, float, float], ...]  # rewritten at this log or the one before

    def _divergence(
        self,
        step: int,
        epoch: int,
        series: list[tuple[int, float]],
        figures: Mapping[str, Mapping[str, Tensor]],
        profile: list[tuple[str, float]],
        alerts: list[tuple[str, float, float | None]],
        bad_parameters: Callable[[], list[str]],
        dying: Mapping[str, float],
    ) -> list[Verdict]:
        nonfinite = first_nonfinite(series)
        bad_sites = [site for site, f in figures.items() if float(f["nonfinite"]) > 0]
        weights = bad_parameters() if nonfinite is not None or bad_sites else []
        if weights and nonfinite is None:
            nonfinite = step  # no loss seen (manual optimisation): the weights tell
        if self.spike is not None and nonfinite is None and not bad_sites:
            return self._spike_over(step, epoch, series)
        # after the log that told a transient: the losses of its step on (a log at step L
        # has the losses of the steps before L)
        since = self.transient - 1
        spike = loss_spike(series, since=since) if self.diverged is None else None
        if spike is None and dying and self.diverged is None:
            spike = jump_to_chance(series, since)  # units dying, the loss back at chance
        waits = (dying or self.pending is not None) and self.diverged is None
        if spike is None and nonfinite is None and waits:
            # a hot first step in a run that never learnt waits a log, as a smoothed rise does:
            # a net that learns leaves its start (or its probe does), one the jump killed sits
            spike = jumped_at_start(series, since)
            spike = spike if spike is not None and self._probe_unlearnt(spike) else None
            if spike is None or self.pending is None:
                self.pending = None if spike is None else step  # (gone: no later one waits)
                return []
        if spike is not None and level_before(series, spike) is None and self._own_level(spike):
            # a start scaled down, the loss up to the model's own level: none, and later
            # spikes are searched after this log
            self.transient, spike = step, None
        if nonfinite is None and spike is not None:
            if self._came_back(series, spike):
                # back below its start (and within BACK x its level before, after a late spike)
                self.transient, self.pending = step, None
                if spike[0] >= step - 1:
                    return []  # (a "spike" at this very step already back: nothing to tell)
                jumped = self._jumped_now(spike)
                if level_before(series, spike) is not None and jumped is None:
                    # late, at an unchanged rate: the step the loss went up (as its words say)
                    self.recurring = [*self.recurring, spike_seen(series, spike).step]
                    if (told := self._recurring(step, epoch)) is not None:
                        return [told]
                if not self._new("divergence", "note"):
                    return []
                outside = self._steps(series, spike)[0] is not None
                written = self.rewrite[0] if self.rewrite else None
                hot = None if jumped else self._hot_then(spike)  # the spike's own rate
                text = transient_text(step, epoch, spike, series, outside, jumped, written, hot)
                return [Verdict("divergence", "note", text)]
            early = self._learnt_level(series, spike) is None
            if self.pending is None and early and coming_back(series, spike[0]):
                # a blow-up the loss is already coming back from (below its start, not yet
                # by the margin, or falling fast): one more log tells a transient from a
                # dead network
                self.pending = step
                return []
            if not is_jump(spike) and not dying:
                # a smoothed rise (not one step's blow-up) is confirmed at a later log while
                # still past its bar: Adam's first steps at a high rate lift the loss 2x for
                # a dozen steps, then it falls (coming down but not yet below the start: wait);
                # units dying at the same log are a second signal that confirms it at once.
                # A late spike (the loss had halved before it) not back near its level
                # before at the next log is confirmed: a BN CNN whose Adam rate jumped 30x
                # sat at 5x its level before 40 steps on, far below the start
                # a learnt loss sitting at its chance level since (``SETTLED`` steps) is
                # no rise that may still come down (hunt 34: training images blank from
                # step 66, the loss at ln 10 since, waited for until step 120); nor is
                # accuracy lost at a rate raised past any used before (``_lost_at_raised_rate``)
                settled = series[-1][0] - spike[0] >= SETTLED and not early
                at_chance = settled and self._at_chance(spike, self._learnt_level(series, spike))
                raised = self._lost_at_raised_rate(spike)
                if self.pending is None and not (at_chance or raised):
                    self.pending = step
                    return []
                # on its way down: a later log tells; unless no better than chance there, or
                # accuracy lost at a rate raised (hunt 94: a slow learner's rate 100x at step
                # 150, val 47% -> 11%, waited for as "early" until it came back at 280), or
                # back at the start and level since a log that waited (``_left_at_chance``)
                stuck = self._no_better_than_chance(series, spike) or (
                    self.pending is not None
                    and self.pending < step
                    and self._left_at_chance(series, spike)
                )
                if not still_spiked(series, spike) and early and not (stuck or raised):
                    return []
        if (nonfinite is None or self.nonfinite_told) and spike is None:
            return []
        level = self._learnt_level(series, spike) if spike is not None else None
        held = fell = prior = None  # prior: the loss's level before a late spike
        if nonfinite is None and spike is not None:
            held, prior = self._accuracy_held(spike, level), level_before(series, spike)
            fell = None if held else self._own_loss_fell(spike, prior)
        # the probe's accuracy held or the model's own loss fell: a harder target (a note);
        # not after BatchNorm switched to eval mode, which is named (held-out hunt 121: a
        # timm resnet10t frozen at step 72, 0.05 -> 1.97, val 92% -> 82%, "did not get worse")
        harder = (held or fell) and self._switch_before(spike[0] if spike else None) is None
        if harder and not self._at_chance(spike, level):
            self.transient, self.pending = step, None  # later spikes are searched after it
            self.harder = spike[0]  # the loss's progress is read from there (``_progress``)
            if not self._new("divergence", "note"):
                return []
            seen = spike_seen(series, spike)  # the per-step losses, as the finding quotes
            prior = seen.before if prior is not None and seen.before is not None else prior
            shown = (seen.step, seen.peak, *spike[2:])
            text = target_text(step, epoch, shown, prior, accuracy=held, own_loss=fell)
            name, read = ("probe_acc", held) if held else ("probe_loss", fell)
            figures_held = {f"{name}_before": read[0], name: read[1]}  # type: ignore[index]
            return [Verdict("divergence", "note", text, figures_held)]
        return self._finding(step, epoch, series, figures, profile, alerts, weights, bad_sites,
                             nonfinite, spike, level)  # fmt: skip

    def _learnt_level(
        self, series: list[tuple[int, float]], spike: tuple[int, float, float, float]
    ) -> tuple[float, float] | None:
        """``(the level learnt before a spike, the loss now)``; ``None``: an early spike.

        After a late spike (the loss had halved) its level just before it; else, where the
        smoothed loss had been learnt before it and the spike passed the start (its best
        ``LEARNT`` x the start or lower: the bar the spike itself was found by) or the spike
        follows one told as a harder
        target, that best: such a spike is no optimiser's start that may still come down
        (hunts 94 and 95: labels shuffled on a Conv1d net whose loss had fallen to 0.5-0.7x
        its start, the spike dropped as "early" and told late as updates too large).
        """
        level = level_and_now(series, spike)
        if level is not None:
            return level
        after_harder = self.harder is not None and spike[0] > self.harder
        learnt = not is_jump(spike) and spike[2] <= LEARNT * spike[3] < LEARNT * spike[1]
        now = loss_now(series)
        return (spike[2], now) if (learnt or after_harder) and now is not None else None
