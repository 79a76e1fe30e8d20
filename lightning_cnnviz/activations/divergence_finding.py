"""A divergence told as a finding: its cause, words and figures (a part of ``DivergenceReview``).

Nothing here knows about Lightning. Once ``divergence_review.DivergenceReview`` has found
a divergence to tell (a non-finite loss or weights, or a spike confirmed), ``_finding``
reads the run's record for its cause (``divergence_causes.divergence_cause``: a step from
a learnt loss, a rate raised, jumped or hot at the first steps, a scaled loss, settings
that climb the loss, a switch to eval mode ...), writes it in words
(``divergence_words.divergence_text``, its remedies ``fitted`` to the run) with its
figures, and makes the units that died with it part of it (``SpikeAftermath._part_of``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from lightning_cnnviz.activations.dead import DeadHistory
from lightning_cnnviz.activations.divergence import is_jump, sudden
from lightning_cnnviz.activations.divergence_causes import divergence_cause
from lightning_cnnviz.activations.divergence_remedies import fitted
from lightning_cnnviz.activations.divergence_words import divergence_text
from lightning_cnnviz.activations.episodes import UnitEpisodes, Verdict
from lightning_cnnviz.activations.initial_scale import over_chance
from lightning_cnnviz.activations.rate_readings import lowered_since
from lightning_cnnviz.activations.recovery import loss_now, spike_seen
from lightning_cnnviz.activations.rewrites import rewrite_words
from lightning_cnnviz.activations.spike_aftermath import SpikeAftermath

__all__ = ["DivergenceFinding"]


class DivergenceFinding(SpikeAftermath):
    """The divergence finding at the log that tells it (a part of ``DivergenceReview``).

    Uses the diagnosis's ``units``, ``history``, the run's settings (``clip``, ``half``,
    ``warmup``, ``hooked``, ``maximize``, ``zeroed``) and what it keeps of the told
    divergence (``diverged``, ``spike``, ``nonfinite_told``).
    """

    units: UnitEpisodes
    history: DeadHistory
    diverged: int | None
    spike: tuple[int, float, float, float] | None
    nonfinite_told: bool
    rates: tuple[float | None, float | None]  # the learning rate at the first log, and now
    chance: tuple[int, float] | None  # (K, the probe's cross-entropy) from the first log
    loss_scale: float | None  # the first loss over the model's own cross-entropy, if scaled
    clip: tuple[float | None, str | None]  # the run's gradient clipping: value, algorithm
    half: bool  # the run trains in 16-bit precision
    warmup: bool  # the run's schedule warms the learning rate up
    hooked: tuple[str, ...]  # the modules whose gradients pass through a hook
    maximize: tuple[str, ...]  # the optimisers set to climb the loss
    zeroed: tuple[tuple[str, str, float, float], ...]  # rewritten layers (``rewritten``)
    _switch_before: Callable[[int | None], tuple[int, int, list[str]] | None]  # ``ModeSwitch``

    def _finding(
        self,
        step: int,
        epoch: int,
        series: list[tuple[int, float]],
        figures: Mapping[str, Mapping[str, Tensor]],
        profile: list[tuple[str, float]],
        alerts: list[tuple[str, float, float | None]],
        weights: list[str],
        bad_sites: list[str],
        nonfinite: int | None,
        spike: tuple[int, float, float, float] | None,
        level: tuple[float, float] | None,
    ) -> list[Verdict]:
        """The divergence told at ``step``: the finding, then the units that died with it.

        ``weights`` and ``bad_sites``: the first parameters and layers holding non-finite
        values; ``level``: the level learnt before a late ``spike`` and the loss now.
        """
        self.nonfinite_told = self.nonfinite_told or nonfinite is not None
        self.diverged = step if self.diverged is None else self.diverged
        self.spike = spike if nonfinite is None else None
        self.spike_acc = self._acc_before(spike) if spike is not None else None
        self.spike_rate = self._rate_at(spike[0]) if spike is not None else None
        held = {s: self.history.previous[s] for s in self.units.held if s in self.history.previous}
        died = held | {site: f for site, f, _ in alerts}
        self.units.held = {}
        # the spike as the per-step losses show it: its first step, its peak, the step before
        seen = spike_seen(series, spike) if spike is not None else None
        quoted = level  # "from ... just before it": the loss of the step before, in the words
        if level and seen is not None and seen.before is not None:
            quoted = (seen.before, level[1])
        before = quoted[0] if quoted else None
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
        if held or steady or self._rate_lowered(until) or not self._rose_into(until):
            rates = None  # ... or one moved too little, or taken, is not what changed then
        switched = self._switch_before(until)  # BatchNorm switched to eval mode before it
        shown = None  # a best above the loss just before it would read as a contradiction
        if seen is not None and spike is not None:
            low = spike[2] if seen.before is None else min(spike[2], seen.before)
            shown = (seen.step, seen.peak, low, spike[3])
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
            first_grads=grads, died=died, level=quoted,
            cause=cause, rewritten=any(rewrite_words(z) in cause for z in self.zeroed[:1]),
            sat=loss_now(series) if self._sat(series, spike, nonfinite, level) else None,
            peak_at=seen.peak_step if seen is not None else None,
        )  # fmt: skip
        message = fitted(message, self.clip[0], self.half, self.warmup)
        figures_out: dict[str, Any] = {"first_nonfinite_step": nonfinite}
        if shown is not None and seen is not None:
            names = ("spike_step", "spike_loss", "best_loss", "start_loss")
            figures_out |= dict(zip(names, shown, strict=True)) | {"peak_step": seen.peak_step}
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
