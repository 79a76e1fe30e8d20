"""The divergence part of ``TrainingDiagnosis``: told, confirmed, or ended as a note.

Nothing here knows about Lightning. ``DivergenceReview`` is a part of
``diagnose.TrainingDiagnosis`` (a mixin, as the monitors' parts are): at each log it
reads the loss series, the layers' non-finite counts and the parameters for a divergence
(``divergence.py``'s and ``recovery.py``'s rules), confirms a smoothed spike at the next
log, holds the units dying while a spike waits, and ends a finite divergence the run
came back from with a note (``spike_aftermath.py``); isolated non-finite losses the model
took no harm from are left out of the series it reads and told as a note
(``skipped_losses.py``). What it keeps across logs (``diverged``,
``spike``, ``transient``, ``pending``, ``nonfinite_told``) lives on the diagnosis, which
saves it in checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from lightning_cnnviz.activations.dead import DeadHistory
from lightning_cnnviz.activations.divergence import (
    LEARNT,
    is_jump,
    jump_to_chance,
    loss_spike,
    sudden,
)
from lightning_cnnviz.activations.divergence_causes import divergence_cause
from lightning_cnnviz.activations.divergence_remedies import fitted
from lightning_cnnviz.activations.divergence_words import divergence_text
from lightning_cnnviz.activations.early_spike import coming_back, jumped_at_start
from lightning_cnnviz.activations.episodes import UnitEpisodes, Verdict
from lightning_cnnviz.activations.initial_scale import over_chance
from lightning_cnnviz.activations.loss_trace import LossTrace, first_nonfinite
from lightning_cnnviz.activations.rate_readings import lowered_since
from lightning_cnnviz.activations.recovery import (
    level_and_now,
    level_before,
    loss_now,
    peak_since,
    still_spiked,
)
from lightning_cnnviz.activations.recovery_words import (
    target_text,
    transient_text,
)
from lightning_cnnviz.activations.rewrites import rewrite_words
from lightning_cnnviz.activations.skipped_losses import SkippedLosses
from lightning_cnnviz.activations.spike_aftermath import SpikeAftermath

__all__ = ["DivergenceReview"]


SETTLED = 10  # steps a learnt loss has sat at its chance level: confirmed at one log


class DivergenceReview(SkippedLosses, SpikeAftermath):
    """The divergence rules' review at one log (a part of ``TrainingDiagnosis``).

    Uses the diagnosis's ``units``, ``history``, ``loss``, ``reported``, ``logs``, the run's
    settings (``clip``, ``half``, ``warmup``) and ``_new``; what the run's record says of a
    spike is read by ``SpikeReadings`` (``divergence_readings.py``).
    """

    units: UnitEpisodes
    history: DeadHistory
    loss: LossTrace
    reported: dict[str, str]
    diverged: int | None
    spike: tuple[int, float, float, float] | None
    transient: int
    harder: int | None
    recurring: list[int]  # the steps of late spikes the run came back from
    pending: int | None
    nonfinite_told: bool
    logs: list[int]
    rates: tuple[float | None, float | None]  # the learning rate at the first log, and now
    log_rates: list[tuple[int, float]]  # (step, learning rate) of the latest logs
    chance: tuple[int, float] | None  # (K, the probe's cross-entropy) from the first log
    log_accs: list[tuple[int, float]]  # (step, probe accuracy) of the latest logs
    loss_scale: float | None  # the first loss over the model's own cross-entropy, if scaled
    clip: tuple[float | None, str | None]  # the run's gradient clipping: value, algorithm
    half: bool  # the run trains in 16-bit precision
    warmup: bool  # the run's schedule warms the learning rate up
    hooked: tuple[str, ...]  # the modules whose gradients pass through a hook
    maximize: tuple[str, ...]  # the optimisers set to climb the loss
    zeroed: tuple[tuple[str, str, float, float], ...]  # rewritten layers (``rewritten``)
    rewrite: tuple[tuple[str, str, float, float], ...]  # ... at this log or the one before
    _switch_before: Callable[[int | None], tuple[int, int, list[str]] | None]  # ``ModeSwitch``

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
                    self.recurring = [*self.recurring, spike[0]]  # late, at an unchanged rate
                    if (told := self._recurring(step, epoch)) is not None:
                        return [told]
                if not self._new("divergence", "note"):
                    return []
                outside = self._steps(series, spike)[0] is not None
                written = self.rewrite[0] if self.rewrite else None
                text = transient_text(step, epoch, spike, series, outside, jumped, written)
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
            text = target_text(step, epoch, spike, prior, accuracy=held, own_loss=fell)
            name, read = ("probe_acc", held) if held else ("probe_loss", fell)
            figures_held = {f"{name}_before": read[0], name: read[1]}  # type: ignore[index]
            return [Verdict("divergence", "note", text, figures_held)]
        self.nonfinite_told = self.nonfinite_told or nonfinite is not None
        self.diverged = step if self.diverged is None else self.diverged
        self.spike = spike if nonfinite is None else None
        self.spike_acc = self._acc_before(spike) if spike is not None else None
        self.spike_rate = self._rate_at(spike[0]) if spike is not None else None
        held = {s: self.history.previous[s] for s in self.units.held if s in self.history.previous}
        died = held | {site: f for site, f, _ in alerts}
        self.units.held = {}
        before = level[0] if level else None
        grads = next((name for name, v in profile if v != v or v in (float("inf"),)), None)
        # one step from a learnt, steady loss to NaN/Inf or a blow-up: one batch, not the rate
        blown = nonfinite if spike is None else spike[0] if is_jump(spike) else None
        at_once = sudden(series, blown) if blown is not None else None
        if at_once is not None and before:
            at_once = (at_once[0], before)  # one figure for "the loss before it" in the text
        # the first loss far above chance: its scale at step 0 is the cause
        k = self.chance[0] if self.chance else None
        first_loss = series[0][1] if series else math.nan
        start = (first_loss, k) if over_chance(first_loss, k) else None
        flat, stepped = self._steps(series, spike)
        if flat is not None and before:
            flat = (flat[0], before, *flat[2:])  # one figure for "the loss before it"
        if stepped is not None and before:
            stepped = (stepped[0], before, *stepped[2:])
        until = spike[0] if spike is not None else nonfinite
        rates = self.rates if None not in self.rates else None
        held = at_once is not None and self._rate_held(until)  # a rate trained at before
        steady = (flat is not None or stepped is not None) and self._rate_steady(until)
        if held or steady or self._rate_lowered(until):
            rates = None  # ... or one moved too little is not what changed at the spike
        switched = self._switch_before(until)  # BatchNorm switched to eval mode before it
        shown = None if spike is None else (spike[0], peak_since(series, spike), *spike[2:])
        negated = self._negated(series, spike, nonfinite)
        first_steps = spike is not None and nonfinite is None and level is None
        # steps on, the model read and still finite (a NaN gradient would have reached every
        # weight), and the loss not driven there (a negated one climbs until it overflows)
        loss_only = nonfinite is not None and nonfinite < step and bool(figures)
        loss_only = loss_only and negated is None and not (weights or bad_sites)
        jump = self._jump(spike[0] if spike is not None else nonfinite)
        # the rate of the steps up to the blow-up, where the run never learnt since or the
        # schedule lowered it since: the cause, not a rate a schedule reached after it
        found = self._hot_start(series, spike) if first_steps else None
        lowered = lowered_since(spike[0] if spike else None, self.spike_rate, self.rates)
        hot = (*found, True) if found else (*lowered, False) if lowered else None
        cause = divergence_cause(at_once, rates, start, self.loss_scale,  # type: ignore[arg-type]
                                 jump,
                                 first=nonfinite == 0,
                                 chance=self._at_chance(spike, level),
                                 inputs=self._bad_inputs(nonfinite), flat=flat,
                                 stepped=stepped, decayed=self._decay_raised(),
                                 grown=self._decay_negative(),
                                 negated=negated,
                                 dropped=self._dropout_raised(), hooked=self.hooked,
                                 momentum=self._momentum_raised(),
                                 maximize=self.maximize if first_loss > 0 else (),
                                 zeroed=self.zeroed, switched=switched, hot=hot,
                                 epoch_start=self._epoch_start(at_once))  # fmt: skip
        message = divergence_text(
            step, epoch, nonfinite_step=nonfinite, spike=shown,
            loss_only=loss_only and grads is None and spike is None,
            first_weights=weights[0] if weights else None,
            first_activations=bad_sites[0] if bad_sites else None,
            first_grads=grads, died=died, level=level,
            cause=cause, rewritten=any(rewrite_words(z) in cause for z in self.zeroed[:1]),
            sat=loss_now(series) if self._sat(series, spike, nonfinite, level) else None,
        )  # fmt: skip
        message = fitted(message, self.clip[0], self.half, self.warmup)
        figures_out: dict[str, Any] = {"first_nonfinite_step": nonfinite}
        if spike is not None:
            figures_out |= dict(
                zip(("spike_step", "spike_loss", "best_loss", "start_loss"), spike, strict=True)
            )
        figures_out |= {"level_before": before} if before else {}
        figures_out |= {"first_nonfinite_parameter": weights[0] if weights else None}
        figures_out |= {"first_nonfinite_layer": bad_sites[0] if bad_sites else None}
        figures_out |= {f"died/{site}": f for site, f in died.items()}
        figures_out |= self._rate_figures(jump, rates, hot)
        figures_out |= {"sudden": True} if at_once else {}
        figures_out |= {"eval_mode_since": switched[0]} if switched else {}  # root_causes
        found = Verdict("divergence", "problem", message, figures_out)
        best = spike[2] if spike is not None else None
        return [found, *self._part_of(series, until, best, step, epoch)]  # type: ignore[arg-type]

    def _sat(
        self,
        series: list[tuple[int, float]],
        spike: tuple[int, float, float, float] | None,
        nonfinite: int | None,
        level: tuple[float, float] | None,
    ) -> bool:
        """Whether an early, finite spike left the loss at its start (``_left_at_chance``)."""
        early = spike is not None and nonfinite is None and level is None
        return early and self._left_at_chance(series, spike)  # type: ignore[arg-type]

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
