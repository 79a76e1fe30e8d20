"""The causes part of ``TrainingDiagnosis``: what stands behind units gone silent.

Nothing here knows about Lightning. ``CauseReview`` is a part of
``diagnose.TrainingDiagnosis`` (a mixin, as the monitors' parts are); the checks of the
weights as initialised, whose cause the dead-unit findings name, are its
``init_review.InitReview``. Weight decay that stalls learning is a
``weight_decay_too_strong`` problem, and that cause. Later, a loss that never left its
chance level while learning stalls makes the data the first suspect (``_cause``), unless
the dead layer took the gradients of the layers before it with it (``grad_collapse.py``):
then the die-off is the cause. Progress is measured from the chance level where the start
sat far above it (``_progress``). Silent units that are the model's outputs (a ReLU on the
logits) are the classes it cannot score, told as ``output_activation``
(``_output_activation``), not as dead units, and a note once they all score again. What it
keeps across logs (``chance_loss``, ``init_cause``, ``init_checked``, ``classes``,
``output_told``) lives on the diagnosis, which saves it in checkpoints.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence

from lightning_cnnviz.activations.dead import DeadHistory
from lightning_cnnviz.activations.dead_rules import FIRST_FALL, GRAD_BURST, LARGE, SETTLED, STALLED
from lightning_cnnviz.activations.dead_words import (
    BLOCKED_REMEDIES,
    CUT_REMEDIES,
    DATA_REMEDIES,
    INIT_REMEDIES,
    MOMENTUM_REMEDIES,
    REMEDIES,
    REWRITE_REMEDIES,
    burst_text,
)
from lightning_cnnviz.activations.divergence_remedies import HOT_REMEDIES, hot_start_text
from lightning_cnnviz.activations.episodes import Verdict
from lightning_cnnviz.activations.grad_collapse import collapse_text
from lightning_cnnviz.activations.gradients import FALLING
from lightning_cnnviz.activations.init_review import InitReview
from lightning_cnnviz.activations.loss_levels import LossLevels
from lightning_cnnviz.activations.loss_trace import SMOOTH, progress
from lightning_cnnviz.activations.output_activation import (
    QUIET_LOGS,
    output_activation_gone,
    output_activation_text,
)
from lightning_cnnviz.activations.probe_learning import probe_falling
from lightning_cnnviz.activations.rewrites import silenced_by
from lightning_cnnviz.core.decay import (
    DECAY_REMEDIES,
    L2_REMEDIES,
    adaptive_l2_text,
    decay_text,
    heavy_decay,
)
from lightning_cnnviz.core.momentum_words import momentum_text
from lightning_cnnviz.core.settings import LR_CUT
from lightning_cnnviz.core.voice import times

__all__ = ["CauseReview"]


class CauseReview(InitReview):
    """The causes of silent units (a part of ``TrainingDiagnosis``).

    Uses the diagnosis's ``levels`` and ``_new``.
    """

    levels: LossLevels
    rates: tuple[float | None, float | None]
    lr_start: float | None
    decay: tuple[float | None, float | None]
    momentum: float | None
    chance_loss: float | None
    init_cause: str | None
    cut: tuple[str, str] | None  # ``gradients.gradient_cut`` at the latest log
    collapse: tuple[tuple[str, ...], float] | None  # ``grad_collapse.collapsed``, likewise
    _kinds: dict[str, str | None]
    _hot_start: Callable[..., tuple[int, float, float | None] | None]  # ``RateReadings``
    rewrite: tuple[tuple[str, str, float, float], ...]  # ``rewrites.rewritten``, lately
    written: tuple[tuple[str, str, float, float], ...]  # ``rewrites.written_between``
    init_checked: bool
    classes: int | None
    loss_scale: float | None
    peak_acc: float | None
    log_accs: list[tuple[int, float]]  # (step, probe accuracy) of the latest logs
    log_losses: list[tuple[int, float]]  # (step, probe cross-entropy), likewise
    logs: list[int]  # the steps of the latest logs, this one's last
    grad_rise: float
    harder: int | None  # the step the training target got harder (``divergence_review``)
    output_told: tuple[int, list[int], int] | None  # the problem's step, classes, logs clear
    reported: dict[str, str]
    history: DeadHistory

    def _new(self, kind: str, severity: str) -> bool:
        raise NotImplementedError  # the diagnosis's

    def _output_activation(
        self,
        step: int,
        epoch: int,
        site: str | None,
        kinds: Mapping[str, str | None],
        clipped: Sequence[int] = (),
    ) -> tuple[list[Verdict], bool]:
        """``output_activation_text`` once, and whether the site's units are claimed.

        Only for class labels (``classes``, from the initial-scale check): a ReLU on a
        regression's outputs can be meant. Claimed units are no ``dead_units``. Without
        such a site, ``clipped``: the classes whose logit is 0 on every probe image where
        no logit is below 0 (``F.relu`` in ``forward``: held out, hunt 19, 67-69% val).
        """
        if not self.classes or (
            site is not None and kinds.get(site) in ("saturating", "leaky", "linear")
        ):
            return [], False
        dead = self.history.dead.get(site, []) if site is not None else list(clipped)
        if (told := self.output_told) is not None:  # gone once no class is stuck for a while
            self.output_told = (*told[:2], 0 if dead else told[2] + 1)
            if self.output_told[2] >= QUIET_LOGS:
                self.output_told = None
                self.reported.pop("output_activation", None)  # a later one is told anew
                message, figures = output_activation_gone(step, epoch, *told[:2])
                return [
                    Verdict("output_activation", "note", message, figures, change="gone")
                ], False
        if not dead:
            return [], False
        if not self._new("output_activation", "problem"):
            return [], True
        share = self.history.previous.get(site, 0.0) if site else len(dead) / self.classes
        message, figures = output_activation_text(step, epoch, site or "", dead, share)
        self.output_told = (step, list(dead), 0)
        return [Verdict("output_activation", "problem", message, figures)], True

    def _decay_stalls(self, gain: float | None) -> bool:
        """Weight decay that holds learning back (``heavy_decay``) while learning stalls.

        Decoupled of ``DECAY_STALLS`` or more a step, or an adaptive optimiser's L2 of
        ``L2_ADAPTIVE`` or more (held-out hunt 122: `Adam(weight_decay=1.0)`, its dead units
        told "check that each label belongs to its input").
        """
        stalled = gain is not None and gain < STALLED
        return stalled and heavy_decay(*self.decay)

    def _decay_said(self) -> tuple[str, str]:
        """What the run's weight decay does to every weight, and what to try (``_decay_stalls``)."""
        per_step, weight_decay = self.decay
        if per_step is None:  # an adaptive optimiser's L2
            return adaptive_l2_text(weight_decay, self.rates[1]), L2_REMEDIES  # type: ignore[arg-type]
        return decay_text(per_step, weight_decay, self.rates[1]), DECAY_REMEDIES

    def _weight_decay(
        self, step: int, epoch: int, gain: float | None, lr: float | None
    ) -> list[Verdict]:
        """Weight decay too strong for learning to start: a problem, and the cause named.

        Held out: SGD 0.05 with ``weight_decay=0.3`` never left ln 10; the first problem
        was ``vanishing_gradients`` (the first layers at 8.4e-4 of the last's gradient)
        with init and architecture remedies, and ``not_learning`` then named it the cause.
        Told from the first log past ``SETTLED`` steps (a slow start is no stall yet).
        """
        if step < SETTLED or not self._decay_stalls(gain):
            return []
        if not self._new("weight_decay_too_strong", "problem"):
            return []
        per_step, weight_decay = self.decay
        said, remedies = self._decay_said()
        text = (
            f"Weight decay too strong at step {step} (epoch {epoch}). {said}; the "
            f"loss has fallen {max(gain or 0.0, 0.0):.0%} since the first step. Try: {remedies}."
        )
        figures = {"decay_per_step": per_step, "weight_decay": weight_decay, "lr": lr}
        return [Verdict("weight_decay_too_strong", "problem", text, figures)]

    def _progress(self, series: list[tuple[int, float]]) -> float | None:
        """``progress``; measured from the chance level when the start was far above it.

        Where the training target got harder (``divergence_review``: the loss stepped up
        while the model's accuracy held), from that step: the loss's new level is no stall
        (held out, hunt 29: 60% of the labels random from step 96, the loss 0.26 -> 2.6
        -> 1.95, silent units told "learning has stalled").
        """
        if self.harder is not None:
            series = [(s, v) for s, v in series if s > self.harder] or series
        gain = progress(series)
        if gain is None or self.chance_loss is None:
            return gain
        recent = [v for _, v in series if math.isfinite(v)][-SMOOTH:]
        return 1.0 - statistics.median(recent) / self.chance_loss

    def _cause(self, series: list[tuple[int, float]], gain: float | None) -> tuple[str | None, str]:
        """What stands behind silent units, and its remedies (``None``: the learning rate's).

        The weights' scale at initialisation, when known; a blow-up of the first steps in a
        run that never learnt (``RateReadings._hot_start``: its rate); a gradient cut; a
        layer rewritten outside the optimiser at this log or the one before (``rewritten``), or
        written between a step's update and the next batch (``written_between``); a
        decay or a momentum (``core.settings.HIGH_MOMENTUM``) far too high; a rate cut
        ``LR_CUT`` x or more below the one set (a rate-remedy reads wrong at 1e-5, a schedule
        stepped per batch); or a loss that never left its chance level while learning stalls
        (``LossLevels.at_chance``): the die-off where it took the gradients of the layers
        before it (``_blocked``), else the data comes first.
        """
        if self.init_cause is not None:
            return self.init_cause, INIT_REMEDIES
        if (hot := self._hot_start(series)) is not None:  # before a cut it explains
            return hot_start_text(*hot), HOT_REMEDIES
        if self.cut is not None:  # ``gradients.gradient_cut``
            return (
                f"No gradient reaches `{self.cut[0]}` and the layers before it (exactly 0, "
                f"while `{self.cut[1]}` after it gets one): they do not learn, and units fed "
                "by them stay as they started.",
                BLOCKED_REMEDIES,
            )
        if (said := silenced_by(self.rewrite, self.written)) is not None:
            return said, REWRITE_REMEDIES
        if self._decay_stalls(gain):
            said, remedies = self._decay_said()
            return f"{said} (see `weight_decay_too_strong`).", remedies
        if said := momentum_text(self.momentum):
            return f"{said.strip()} Units silenced by such steps follow from it.", MOMENTUM_REMEDIES
        start, now = self.lr_start, self.rates[1]
        if start and now is not None and now * LR_CUT <= start:
            rate = "0" if now == 0 else f"{now:.3g}, {times(start / now)} below the {start:.3g} set"
            return (
                f"The learning rate is {rate}: updates that small do not silence units, so "
                "too large an update is not the cause; a schedule that cut the rate this "
                "early leaves the model barely learning, and its units drift.",
                CUT_REMEDIES,
            )
        # a model whose probe accuracy once reached twice chance had learnt, whatever the
        # loss (hunt 24: Adam's L2 decay of 1.0 took 36.7% back to chance: "nothing learnt")
        learnt = self.peak_acc is not None and self.peak_acc >= 2 / (self.classes or 2)
        at_chance = self.levels.at_chance(series, self.classes)
        if gain is not None and gain < STALLED and at_chance and not learnt:
            if (blocked := self._blocked()) is not None:
                return blocked, REMEDIES
            if self.grad_rise >= GRAD_BURST:
                return burst_text(self.grad_rise), REMEDIES
            chance = math.log(self.classes or 2)
            return (
                f"The loss has stayed at its chance level (ln {self.classes} = {chance:.3f}) "
                "since the first step: nothing has been learnt, and units silent in a model "
                "that learns nothing are more likely a consequence than the cause.",
                DATA_REMEDIES,
            )
        return None, INIT_REMEDIES

    def _fell(
        self, series: list[tuple[int, float]], previous: int, gain: float | None, falling: bool
    ) -> bool:
        """Fallen since the last log, a new low or not: silent units did not stop learning.

        ``FALLING`` of it; at the first log, ``FIRST_FALL`` of the loss's start (``gain``);
        ``falling``: the gradients' own reading of it. A loss that never left its chance level
        falls only beyond its own noise, not by a wobble of 3% (held-out hunt 118: ln 3 "fell
        3%" while a layer died, told "learning goes on"; a 100-class net leaving chance by
        2.7%, 3.6 standard errors, does learn). Or the probe's own cross-entropy, read in
        eval mode, at a new low with its accuracy past chance (``probe_learning.py``).
        """
        if previous < 0:
            fell = (gain or 0.0) >= FIRST_FALL
        else:
            fell = (self.levels.fall(series, previous) or 0.0) >= FALLING
        at_chance = (
            gain is not None and gain < STALLED and self.levels.at_chance(series, self.classes)
        )
        # read in eval mode too: dropout 0.9 keeps the training loss near its start while
        # the model learns (``probe_learning.py``; held-out hunt 122)
        eval_mode = probe_falling(self.log_losses, self.log_accs, self.logs[-1], self.classes)
        return eval_mode or (
            (falling or fell) and not (at_chance and not self.levels.fell_clearly(series, previous))
        )

    def _blocked(self) -> str | None:
        """The die-off as the cause, in words, or None.

        A rectifier layer ``LARGE`` silent, the gradients of the layers before the last
        collapsed with it (``grad_collapse.collapsed``).
        """
        silent = [
            site
            for site, share in self.history.previous.items()
            if share >= LARGE and self._kinds.get(site) not in ("leaky", "saturating", "linear")
        ]
        if self.collapse is None or not silent:
            return None
        return collapse_text(silent, *self.collapse)

    def _claim(self, verdicts: list[Verdict], cause: str | None) -> list[Verdict]:
        """``verdicts``, a dead-units problem told with the collapse as its cause marked.

        ``not_learning`` names it then (``core.root_causes``), as it does a divergence.
        """
        if cause is not None and self.collapse is not None and cause == self._blocked():
            for v in verdicts:
                if v.kind == "dead_units" and v.severity == "problem" and v.change == "new":
                    v.figures["gradient_collapse"] = self.collapse[1]
        return verdicts
