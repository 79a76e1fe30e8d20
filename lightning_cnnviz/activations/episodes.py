"""Dead and dormant units as episodes: reported when units die, a note once they recover.

``UnitEpisodes`` turns one log's dead/dormant alerts (``DeadHistory.update``) into
findings. An *episode* opens when a kind (``dead_units`` or ``dormant_units``) is first
reported; it is reported once more if its note becomes a problem (its text is not
rewritten as the die-off worsens). It ends when every site of it is back below
``RECOVERED`` x the threshold: the finding becomes a note ("recovered by step N",
``change="gone"``, which the callback writes over the reported finding), and a later
die-off opens a new episode, reported as new. A ``dead_units`` problem raised while the
loss had not yet fallen well (its harm was stalled learning) becomes a note once the
loss has fallen ``EASED`` further or ``LATE`` since the start (one raised later, once the
loss has lost ``OUTGROWN`` of its level then) with no site risen ``FAST_RISE`` or grown
past ``LARGE`` since (``episode_ends.EpisodeEnds._eased``): the units no longer hold
learning back, though still silent (a BN CNN at batch 2 kept a dense layer 60% dead
from step 50 while val reached 88-90%).
Without episodes, a transient in the slow start of a healthy run (17% of a layer, back
to 0%) used up the one report, and a real die-off 60 steps later was never told.

Two kinds of alert wait one log (*held*) before they may be a problem:

* one whose harm is early: stalled learning, or a share rising fast while the loss is
  not yet falling well (``dead_rules.dead_reason`` ``"stalled"``, or ``"rising"`` below
  ``SLOW``). The slow start of a healthy run has 25% of a layer dead for one log, then
  9%; Adam silences a third of a dense layer after a flatten in its first 20 steps
  (8% -> 40% at 29% progress, 27% -> 47% at 12% in a Conv3d net) and the loss then falls
  on, the share flat at 30-47% while val accuracy reaches 96-99.8%. At the next log the
  alert is judged again from the share before it was held: a problem if learning still
  suffers, a note if it does not; so is most of a layer silent before step ``SETTLED``
  while the loss already moves (``MOVING``: a hard task's slow start, or a fall read from
  the few steps before ``progress`` can be); a stall waits until step ``SETTLED``, as
  ``not_learning`` does (or the end of fit);
* every alert while a loss spike waits for its confirmation (``TrainingDiagnosis``):
  units dying with a divergence are part of it, not a dead-unit finding.

Example::

    >>> episodes = UnitEpisodes(threshold=0.25)
    >>> [v.severity for v in episodes.review(40, 0, [("fc", 0.8, 0.0)], {"fc": 0.8},
    ...                                      {"fc": "rectifier"}, {"fc": list(range(8))}, 0.1)]
    ['problem']
    >>> [(v.severity, v.change) for v in episodes.review(80, 1, [], {"fc": 0.0},
    ...                                                  {"fc": "rectifier"}, {}, 0.5)]
    [('note', 'gone')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from lightning_cnnviz.activations.dead_rules import (
    FAST_RISE,
    LARGE,
    MIN_UNITS,
    SETTLED,
    SLOW,
    STALLED,
    dead_reason,
    lifted,
)
from lightning_cnnviz.activations.dead_words import (
    DATA_REMEDIES,
    INIT_REMEDIES,
    REWRITE_REMEDIES,
    dead_text,
    dormant_text,
)
from lightning_cnnviz.activations.episode_ends import (
    OUTGROWN,
    RECOVERED,
    Alert,
    Episode,
    EpisodeEnds,
    Verdict,
)

__all__ = ["OUTGROWN", "RECOVERED", "Episode", "UnitEpisodes", "Verdict", "die_off"]

MOVING = 0.03  # the loss fell this much since the start: it moves (a slow start, not stalled)
RISEN = 0.05  # a standing note's site risen this much while learning stalls: judged again


def die_off(alerts: Sequence[Alert], units: Mapping[str, int]) -> dict[str, float]:
    """Sites whose dead (dormant) share rose ``FAST_RISE`` since the last log, by ``MIN_UNITS``+.

    The second signal that confirms a loss spike at once (``TrainingDiagnosis``).

    Example::

        >>> die_off([("a", 0.97, 0.0), ("b", 0.3, 0.25), ("c", 0.5, None)], {"a": 32, "b": 16})
        {'a': 0.97}
    """
    return {
        site: share
        for site, share, before in alerts
        if before is not None
        and share - before >= FAST_RISE
        and (share - before) * units.get(site, 0) >= MIN_UNITS - 0.5
    }


class UnitEpisodes(EpisodeEnds):
    """Dead/dormant episodes across logs, and the alerts held for one log.

    Args:
        threshold: the dead (dormant) share whose crossing is an alert.
        tau: the dormant threshold (for the words).
    """

    def __init__(self, threshold: float, tau: float = 0.025) -> None:
        self.threshold, self.tau = threshold, tau
        self.open: dict[str, Episode] = {}
        self.held: dict[str, float | None] = {}  # site -> its share before it was held

    def hold(self, alerts: Sequence[Alert]) -> None:
        """Keep ``alerts`` for the next log (a loss spike waits for its confirmation)."""
        for site, _, before in alerts:
            self.held.setdefault(site, before)

    def review(
        self,
        step: int,
        epoch: int,
        alerts: Sequence[Alert],
        fractions: Mapping[str, float],
        kinds: Mapping[str, str | None],
        dead_channels: Mapping[str, Sequence[int]],
        progress: float | None,
        cause: str | None = None,
        falling: bool = False,
        remedies: str = INIT_REMEDIES,
        squeezed: Collection[str] = (),
        early_fall: float | None = None,
        consequence: bool = False,
        final: bool = False,
        learnt: float | None = None,
        probe: tuple[float, float] | None = None,
    ) -> list[Verdict]:
        """One log's dead/dormant verdicts: episodes that ended, then new ones.

        ``fractions``: every site's dead (dormant for leaky sites) share now;
        ``dead_channels``: the dead channels per site; ``cause``: what is known to have silenced
        the units, said with its ``remedies`` instead of the learning-rate ones; ``falling``:
        the loss fell since the last log, ``squeezed``: the sites of squeeze-excite
        bottlenecks (``dead_rules.dead_reason``); ``consequence``: ``cause`` is another
        finding's (a gradient cut the frozen layers tell), so dead units are a note;
        ``early_fall``: the loss's fall since its start where ``progress`` cannot be read yet
        (``loss_trace.progress`` from ``2 * SMOOTH`` steps). ``REWRITE_REMEDIES`` tell a
        ``cause`` that is a layer written outside the optimiser (``rewrites.silenced_by``).
        ``final``: the fit has ended, no later log comes: nothing is held any more.
        ``learnt``: the probe's accuracy where it shows a model that learnt well
        (``probe_learning.probe_learnt``): learning is read as going on at ``SLOW`` at least,
        the loss held up by a floor (label smoothing); no "late collapse" is read from it.
        ``probe``: its accuracy past chance and cross-entropy's fall below ``ln K``
        (``probe_learning.probe_started``): a slow start's problem eases by it, and a loss
        reading ``STALLED`` while that fall is past it is held up, not stalled: ``learnt``.
        """
        out = self._ended(step, epoch, fractions)
        out += self._eased(step, epoch, fractions, progress, learnt, probe)
        # noisy labels hold the training loss near its start while the probe learns (held-out
        # hunt 127: `body.6` told again "stop learning" mid-run as val climbed past 60%)
        if learnt is None and probe and progress is not None and progress < STALLED <= probe[1]:
            learnt = probe[0]
        fell, progress = progress, lifted(progress, learnt)
        merged = self._with_held(alerts, fractions)
        stalled = progress is not None and progress < STALLED
        written = remedies is REWRITE_REMEDIES
        data_blamed = remedies is DATA_REMEDIES
        if stalled and not falling and not data_blamed:  # shuffled labels: the note stands
            merged += self._risen(fractions, {site for site, *_ in merged})
        dead, dormant = [], []
        for site, share, before, persisted in merged:
            # silenced by a write outside the optimiser, which no gradient undoes (hunt 73:
            # conv2's biases -20 at step 1000, half its channels dead to the end, the loss at
            # a new low with the units left, told "learning goes on"; hunt 75: a LayerNorm's
            # shift -20 before GELU told "dormant ... lower the learning rate")
            by_write = written and before is not None and share - before >= FAST_RISE
            if kinds.get(site) == "leaky":
                dormant.append(((site, share, before), by_write or (stalled and share >= LARGE)))
                continue
            count = len(dead_channels[site]) if site in dead_channels else None
            reason = dead_reason(
                share, before, progress, count, self.threshold, falling, step >= SETTLED,
                site in squeezed,
            )  # fmt: skip
            if reason is None and by_write and (count or MIN_UNITS) >= MIN_UNITS:
                reason = "written"
            early = reason == "stalled" or (reason == "rising" and progress < SLOW)  # type: ignore[operator]
            # most of a layer silent in the first steps while the loss already moves: the
            # next log tells whether learning goes on (held out: 80% of a dense head at
            # step 20 of a hard task, loss 2.39 -> 2.27, then down 45% and val doubled,
            # as with LeakyReLU everywhere)
            # so where the loss moves before ``progress`` can be read (``early_fall``; hunt
            # 72: a 3136 -> 256 head 80% silent at step 12 under SGD 0.1 with momentum, 96%
            # at step 20 while the loss fell; 96.8% val)
            moving = progress if progress is not None else early_fall
            early = early or (
                reason == "large" and step < SETTLED and moving is not None and moving >= MOVING
            )
            # the data blamed before step SETTLED: the next log's gradients may show the
            # die-off took those of the layers before it, and was the cause (held-out hunt
            # 118: 81% silent at step 20, the convolutions' gradients 1/1000 at step 30)
            early = early or (reason is not None and data_blamed and step < SETTLED)
            if (early and not persisted) or (reason == "stalled" and step < SETTLED and not final):
                # maybe the first steps' transient: wait one log; a stall, until a slow
                # start is over (hunt 82: 19-31% silent at step 30 of an 80-step run at
                # chance since its start, then 46% val by step 80)
                self.held[site] = before
                continue
            if reason == "rising" and persisted and progress >= SLOW:  # type: ignore[operator]
                reason = None  # it rose while the loss fell slowly; it has fallen well since
            dead.append(((site, share, before), reason is not None and not consequence))
        if dead:
            severity = "problem" if any(hurts for _, hurts in dead) else "note"
            found = [a for a, _ in dead]
            text = dead_text(found, dead_channels, step, epoch, severity, fell, cause,
                             remedies, consequence, learnt)  # fmt: skip
            out += self._opened("dead_units", severity, step, found, text, fell)
        if dormant:
            severity = "problem" if any(hurts for _, hurts in dormant) else "note"
            found = [a for a, _ in dormant]
            text = dormant_text(found, step, epoch, self.tau, cause if written else None)
            out += self._opened("dormant_units", severity, step, found, text, None)
        return out

    def _with_held(
        self, alerts: Sequence[Alert], fractions: Mapping[str, float]
    ) -> list[tuple[str, float, float | None, bool]]:
        """This log's alerts plus the held ones still past the threshold (or risen)."""
        held, self.held = self.held, {}
        merged = [(s, f, held.get(s, b), s in held) for s, f, b in alerts]
        for site, before in held.items():
            share = fractions.get(site)
            if site in {a[0] for a in alerts} or share is None:
                continue
            if share >= self.threshold or (before is not None and share - before > 0.1):
                merged.append((site, share, before, True))
        return merged

    def _risen(
        self, fractions: Mapping[str, float], merged: Collection[str]
    ) -> list[tuple[str, float, float | None, bool]]:
        """Sites of a standing dead-units note risen ``RISEN`` since it was told, judged again.

        Only while learning stalls and the data are not the suspect (the caller's test: units
        dying slowly on shuffled labels stay a note, ``not_learning`` tells the stall); their
        rise raises no alert of its own (held-out hunt 118: a note at 88%, then 97% and 100%
        with the loss flat at chance and every gradient before the layer gone, never told as a
        problem).
        """
        episode = self.open.get("dead_units")
        if episode is None or episode.severity != "note":
            return []
        return [
            (site, fractions[site], told, True)
            for site, told in episode.sites.items()
            if site not in merged and fractions.get(site, 0.0) - told >= RISEN
        ]

    def _opened(
        self,
        kind: str,
        severity: str,
        step: int,
        found: Sequence[Alert],
        text: str,
        progress: float | None,
    ) -> list[Verdict]:
        """A new episode, or a note becoming a problem: reported; else only remembered."""
        sites = {site: share for site, share, _ in found}
        episode = self.open.get(kind)
        if episode is not None:
            if episode.severity == "problem" or severity == "note":
                episode.sites |= {s: f for s, f in sites.items() if s not in episode.sites}
                return []
            # a note become a problem: told now, with the shares it is told with
            episode.severity, episode.progress, episode.since = severity, progress, step
            episode.read_at = None
            episode.sites |= sites
        else:
            self.open[kind] = Episode(severity, step, dict(sites), progress)
        figures: dict[str, Any] = dict(sites)
        figures |= {"progress": progress} if progress is not None else {}
        return [Verdict(kind, severity, text, figures)]

    def state_dict(self) -> dict[str, Any]:
        """Open episodes and held alerts, for a checkpoint."""
        return {
            "open": {k: dataclasses.asdict(e) for k, e in self.open.items()},
            "held": dict(self.held),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (or an earlier release's positional lists)."""
        self.open = {k: _episode(v) for k, v in state.get("open", {}).items()}
        self.held = dict(state.get("held", {}))


def _episode(saved: Mapping[str, Any] | Sequence[Any]) -> Episode:
    """An ``Episode`` from a checkpoint: its fields by name, or in order as saved before."""
    if isinstance(saved, Mapping):
        return Episode(**{**saved, "sites": dict(saved["sites"])})
    severity, since, sites, *rest = saved
    return Episode(str(severity), int(since), dict(sites), *rest[:2])
