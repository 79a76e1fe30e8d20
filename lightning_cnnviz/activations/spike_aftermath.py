"""What follows a spike told as a divergence: units that died on its way, recurring spikes, its end.

A part of ``DivergenceReview`` (``divergence_review.py``): dead/dormant problems told on
the way to a divergence become notes, part of it (``_part_of``); late spikes the run came
back from ``RECURRING`` times at an unchanged rate are a problem (``_recurring``); a
finite divergence the run came back from ends with a note (``_spike_over``).
"""

from __future__ import annotations

from lightning_cnnviz.activations.divergence_readings import SpikeReadings
from lightning_cnnviz.activations.divergence_words import crawl_text, part_of_text
from lightning_cnnviz.activations.early_spike import blown_from_start, cooled, crawling
from lightning_cnnviz.activations.episodes import UnitEpisodes, Verdict
from lightning_cnnviz.activations.recovery import (
    loss_now,
    recovered,
    run_up,
    spike_seen,
)
from lightning_cnnviz.activations.recovery_words import anew_text, recovered_text, recurring_text

__all__ = ["RECURRING", "SpikeAftermath"]

RECURRING = 3  # late spikes come back from at an unchanged rate: something the run repeats


class SpikeAftermath(SpikeReadings):
    """A told spike's aftermath (a part of ``DivergenceReview``).

    Uses the diagnosis's ``units``, ``logs``, ``recurring``, ``spike``, ``diverged``,
    ``transient``, ``pending``, ``reported``, ``rates``, ``log_rates`` and ``_new``.
    """

    units: UnitEpisodes
    logs: list[int]
    recurring: list[int]  # the steps of late spikes the run came back from
    spike: tuple[int, float, float, float] | None
    diverged: int | None
    transient: int
    pending: int | None
    crawled: bool
    reported: dict[str, str]
    rates: tuple[float | None, float | None]
    log_rates: list[tuple[int, float]]

    def _new(self, kind: str, severity: str) -> bool:
        raise NotImplementedError  # the diagnosis's

    def _part_of(
        self, series: list[tuple[int, float]], until: int, best: float | None, step: int, epoch: int
    ) -> list[Verdict]:
        """Dead/dormant problems told on the way to this divergence: notes, part of it.

        On the way: at a log after the loss began its rise (``run_up``), or at the last
        log before the spike (a BN CNN warming up to lr 1.0 lost 38% of a dense layer at
        step 90, its batch losses scattered 0.2-1.1 about 0.6, and spiked at step 103).
        Their episodes stay open as notes (``episodes.py``): once the run is back, a new
        die-off is a problem again.
        """
        rise = run_up(series, until, best)
        # a log at step L has the losses of the steps before L: the last log before the
        # spike's step, and the logs that saw the rise begin (after its first step)
        before = max((s for s in self.logs if s <= until), default=until)
        out = []
        for kind, episode in self.units.open.items():
            if episode.severity != "problem" or (episode.since <= rise and episode.since < before):
                continue
            episode.severity = "note"
            text = part_of_text(kind, episode.since, until, rise, step, epoch)
            figures = {"reported_step": episode.since, "rise_step": rise, "spike_step": until}
            out.append(Verdict(kind, "note", text, figures, change="gone"))
        return out

    def _recurring(self, step: int, epoch: int) -> Verdict | None:
        """Late spikes the run came back from, ``RECURRING`` or more at an unchanged rate.

        One such spike is an odd batch; several are something the run does again and
        again (held out, hunt 30: the classifier head re-initialised at each epoch start,
        the loss 0.1 -> 3-4 and back five times, val at 83-90% against 95%, told as one
        "brief overshoot" note).
        """
        if len(self.recurring) < RECURRING or not self._new("divergence", "problem"):
            return None
        text = recurring_text(step, epoch, self.recurring)
        return Verdict("divergence", "problem", text, {"spike_steps": list(self.recurring)})

    def _crawl(
        self,
        step: int,
        epoch: int,
        series: list[tuple[int, float]],
        spike: tuple[int, float, float, float],
    ) -> list[Verdict]:
        """The told divergence once more where its loss is back below the start but crawls.

        Back by ``recovered``'s margin while ``crawling``: told again in words that say so
        (the text told at the spike reads as a blow-up that may pass; held-out hunt 118).
        """
        now = loss_now(series)
        if self.crawled or now is None or not recovered(series, spike=spike):
            return []
        if not crawling(series, spike, self._blow_up_rates()):
            return []
        self.crawled = True
        acc = self.log_accs[-1][1] if self.log_accs and self.log_accs[-1][0] >= spike[0] else None
        seen = spike_seen(series, spike)  # the per-step losses, as the finding quotes them
        shown = (seen.step, seen.peak, *spike[2:])
        text = crawl_text(step, epoch, shown, seen.peak, now, acc, self.rates[1])
        figures = {"spike_step": seen.step, "loss_now": now, "start_loss": spike[3]}
        return [Verdict("divergence", "problem", text, figures)]

    def _spike_over(self, step: int, epoch: int, series: list[tuple[int, float]]) -> list[Verdict]:
        """A finite spike told as a divergence, once the loss is back: a note that ends it.

        ``recovered`` (the rule's own test: below the start, and after a late spike within
        ``BACK`` x its level before; the probe accuracy not far below its value before,
        ``_came_back``), or learning a new target (``_learns_anew``); the other rules judge
        again from this log on, and a later spike is a new divergence.
        """
        spike = self.spike
        anew = None if spike is None else self._learns_anew(series)
        if spike is None or not (anew or self._came_back(series, spike)):
            return [] if spike is None else self._crawl(step, epoch, series, spike)
        self.crawled = False
        reported, self.diverged, self.spike = self.diverged, None, None
        self.transient, self.pending, self.reported["divergence"] = step, None, "note"
        if anew is not None:  # a new target learnt: its level, not the old one, is the bar
            self.harder = spike[0]
            text = anew_text(step, epoch, spike, reported, *anew)
            figures = {"spike_step": spike[0], "probe_acc_before": anew[0], "probe_acc": anew[1]}
            return [Verdict("divergence", "note", text, figures, change="gone")]
        first = self.rates[0]
        rose = first is not None and any(lr > 1.5 * first for _, lr in self.log_rates)
        rose = rose and self._rose_into(spike[0])  # not a rate the run took before it
        outside = any(step is not None for step in self._steps(series, spike))
        jumped = self._jumped_now(spike)
        rates = self._blow_up_rates() if blown_from_start(series, spike) else None
        cool = rates if cooled(rates) else None  # a hot first step: its rate named
        hot = None if jumped else self._hot_then(spike)  # a hot step between two logs
        text = recovered_text(
            step, epoch, spike, series, reported, rose, outside, jumped, cool, hot=hot
        )
        return [Verdict("divergence", "note", text, {"spike_step": spike[0]}, change="gone")]
