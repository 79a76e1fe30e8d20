"""Dead/dormant episodes as records, and how one ends: recovered, or outgrown by learning.

Nothing here knows about Lightning. ``Verdict`` is one finding to report, ``Episode`` a
reported dead/dormant finding still standing. ``EpisodeEnds`` is a part of
``episodes.UnitEpisodes`` (a mixin): an episode ends when every site of it is back below
``RECOVERED`` x the threshold (``_ended``: a note "recovered by step N" written over it);
a ``dead_units`` problem stops hurting once learning has outgrown it (``_eased``: a note,
the episode left open so that a further die-off is a problem again).

Example::

    >>> Episode("problem", 40, {"fc": 0.8}, 0.1).sites
    {'fc': 0.8}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightning_cnnviz.activations.dead_rules import FAST_RISE, LARGE, LATE, SLOW

__all__ = ["EASED", "OUTGROWN", "RECOVERED", "Alert", "Episode", "EpisodeEnds", "Verdict"]

RECOVERED = 0.5  # an episode ends when its sites are all below half the threshold...
FELL = 0.05  # ...and one of them fell this much since it was reported
OUTGROWN = 0.5  # a late die-off stops hurting once the loss has lost this much of its level then
EASED = 0.2  # a slow start's die-off stops hurting once the loss fell this much more (of its start)
_WORDS = {"dead_units": ("Dead units", "dead"), "dormant_units": ("Dormant units", "dormant")}


@dataclass
class Verdict:
    """One finding to report: ``kind``, ``severity``, ``message``, ``figures``.

    ``change``: ``"new"`` (report it) or ``"gone"`` (the finding of this kind reported
    before has ended: write this note over it).
    """

    kind: str
    severity: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)
    change: str = "new"


@dataclass
class Episode:
    """A reported dead/dormant finding still standing: its severity, step, sites, progress."""

    severity: str
    since: int
    sites: dict[str, float]  # site -> its share when reported
    progress: float | None = None  # the loss's progress when reported as it stands
    read_at: int | None = None  # the step ``progress`` was read, where later than ``since``


Alert = tuple[str, float, float | None]


def _shares(
    episode: Episode, fractions: Mapping[str, float], word: str
) -> tuple[dict[str, float], str]:
    """An episode's sites' shares now, and in words beside those it was reported with."""
    now = {site: fractions.get(site, 0.0) for site in episode.sites}
    parts = ", ".join(
        f"`{site}` {now[site]:.0%} {word} (was {share:.0%})"
        for site, share in episode.sites.items()
    )
    return now, parts


class EpisodeEnds:
    """How the open episodes end (a part of ``UnitEpisodes``).

    Uses its ``open`` (kind -> ``Episode``) and ``threshold``.
    """

    open: dict[str, Episode]
    threshold: float

    def _ended(self, step: int, epoch: int, fractions: Mapping[str, float]) -> list[Verdict]:
        out = []
        for kind, episode in list(self.open.items()):
            title, word = _WORDS[kind]
            now, parts = _shares(episode, fractions, word)
            if any(share >= RECOVERED * self.threshold for share in now.values()):
                continue
            if all(now[site] > share - FELL for site, share in episode.sites.items()):
                continue  # reported below the bar and still there: nothing came back (hunt 18)
            del self.open[kind]
            text = (
                f"{title} recovered by step {step} (epoch {epoch}): {parts}. Reported at step "
                f"{episode.since} as a {episode.severity}; a note now: the units came back on "
                "their own. A later die-off is reported anew."
            )
            figures = {site: now[site] for site in episode.sites}
            figures |= {"reported_step": episode.since, "recovered_step": step}
            out.append(Verdict(kind, "note", text, figures, change="gone"))
        return out

    def _eased(
        self,
        step: int,
        epoch: int,
        fractions: Mapping[str, float],
        progress: float | None,
        learnt: float | None = None,
        probe: tuple[float, float] | None = None,
    ) -> list[Verdict]:
        """A ``dead_units`` problem that learning has outgrown since: a note.

        Raised in the slow start, once the loss has fallen ``EASED`` (20 points of its start)
        further since, or ``LATE`` since the start, whichever comes first, however large
        the silent share (held out: 80% of a hard task's dense head silent from step 20,
        the loss down 45% by the end and val 20% -> 40%, as with LeakyReLU everywhere); raised
        once the model had learnt (a die-off after a rate raised 10x by the schedule), once
        the loss has since lost ``OUTGROWN`` of what was left of it: a collapse that hurt
        keeps the loss where it was (held out: a dense layer 8% -> 43% dead at step 60,
        loss 0.57, then 0.005 and 96% val with the layer still 40% silent). A slow start's
        problem eases too where the probe shows learning (``_started``).
        """
        episode = self.open.get("dead_units")
        if episode is None or episode.severity != "problem" or progress is None:
            return []
        if episode.progress is None:
            # reported before the loss's progress could be read: measured from the first log
            # that reads it (hunt 26: 78% of a dense layer at step 10 stood as a problem to
            # the end of a run whose training loss fell 99% to 100% train accuracy)
            episode.progress, episode.read_at = progress, step
            return []
        then = episode.progress
        bar = min(LATE, then + EASED) if then < SLOW else 1 - (1 - then) * (1 - OUTGROWN)
        now, parts = _shares(episode, fractions, "dead")
        grown = any(
            share - then_share >= FAST_RISE or share >= LARGE > then_share
            for site, share in now.items()
            if (then_share := episode.sites[site]) is not None
        )  # grown since: a further die-off (a layer silent from the start may stay so)
        when = "then" if episode.read_at is None else f"at step {episode.read_at}, its first read"
        figures: dict[str, Any] = dict(now) | {"progress": progress, "reported_step": episode.since}
        if progress >= bar and not grown:
            said = (
                f"the loss has fallen {progress:.0%} since the start, and the silent layers "
                f"have not grown ({parts})"
            )
        elif then < SLOW and probe is not None and (learnt is not None or probe[1] >= bar):
            said = _started(probe, progress, progress < bar, grown, parts)
            figures |= {"probe_acc": probe[0], "probe_fall": probe[1]}
        else:
            return []
        episode.severity = "note"  # the episode stays open: a new rise is a problem again
        text = (
            f"Dead units no longer hold learning back (step {step}, epoch {epoch}): {said}. "
            f"Reported at step {episode.since} as a problem ({max(then, 0.0):.0%} progress "
            f"{when}); a note now. The units stay silent: a layer this sparse wastes width, and "
            "a further rise is reported again."
        )
        return [Verdict("dead_units", "note", text, figures, change="gone")]


def _started(probe: tuple[float, float], fell: float, short: bool, grown: bool, parts: str) -> str:
    """A slow start's problem eased where the probe shows learning: in words.

    Its harm was learning stalled ("nothing has been learnt", where the loss sat at chance),
    and the model learns since, whatever the training loss says: ``probe``, its accuracy
    past chance and its cross-entropy, read in eval mode, ``EASED`` below ``ln K`` (or the
    accuracy ``probe_learnt`` well); ``short``: the training loss's fall (``fell``) short of
    the bar, held up by a floor (held-out hunt 127: 60% random labels, the loss at chance
    for 60 steps, then 87% val with `body.6` 50-66% dead throughout, told "nothing has
    been learnt" to the end). Also where the share grew (``grown``): the model learnt past it.

    Example::

        >>> _started((0.75, 0.4), 0.12, True, False, "`fc` 60% dead (was 62%)")[:60]
        'learning started after it was reported: 75% of the probe ima'
    """
    floor = " (a floor holds it up: noisy labels, label smoothing, heavy augmentation)"
    grew = "grown, yet the model learnt past them" if grown else "not grown"
    return (
        f"learning started after it was reported: {probe[0]:.0%} of the probe images are "
        f"right and their cross-entropy is {probe[1]:.0%} below the chance level (eval "
        f"mode), the training loss {max(fell, 0.0):.0%} below its start{floor if short else ''}; "
        f"the silent layers have {grew} ({parts})"
    )
