"""The training-side diagnosis at each log: divergence, gradients across depth, dead units.

Nothing here knows about Lightning. ``TrainingDiagnosis`` keeps what the rules need
across logs (the loss trace, the dead-strip history, the first gradient level, what
was reported) and ``review`` turns one log's figures into ``Verdict`` s, in the order
of their causes:

1. ``divergence`` (``divergence.py``, reviewed by ``divergence_review.py``): a non-finite
   loss, or a loss spike; where the non-finite values first showed. Units dying with it,
   and gradients exploding with it, are part of it (no separate dead-unit or gradient
   finding afterwards).
2. ``vanishing_gradients`` / ``exploding_gradients`` / ``saturated_activations``
   (``gradients.py``, reviewed by ``gradient_review.py``). First losses far above the
   chance level ``ln K`` mean weights too large from the start (``initial_scale``): said as
   the cause of the dead units that follow (``cause_review.py``, as are all-zero layers).
3. ``dead_units`` (rectifiers) and ``dormant_units`` (activations that pass gradient
   below zero), each a problem only when it hurts (``dead_rules.dead_reason``), as episodes
   (``episodes.py``): a note once the units recover, reported anew if they die again.
   Units dying while a loss spike waits for its confirmation are held (part of it if
   it is confirmed); a die-off at the log that first sees a spike confirms it at once.

The other kinds are reported once per run, and once more if a note becomes a problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor

from lightning_cnnviz.activations.carry_over import carry_over_verdict
from lightning_cnnviz.activations.cause_review import CauseReview
from lightning_cnnviz.activations.dead import DeadHistory
from lightning_cnnviz.activations.diagnosis_state import DiagnosisState
from lightning_cnnviz.activations.divergence_review import DivergenceReview
from lightning_cnnviz.activations.episodes import UnitEpisodes, Verdict, die_off
from lightning_cnnviz.activations.frozen_norms import frozen_norms_text
from lightning_cnnviz.activations.grad_collapse import collapsed, first_readings
from lightning_cnnviz.activations.gradient_review import GradientReview
from lightning_cnnviz.activations.gradients import gradient_cut
from lightning_cnnviz.activations.log_readings import LogReadings
from lightning_cnnviz.activations.loss_levels import LossLevels
from lightning_cnnviz.activations.loss_trace import SMOOTH, LossTrace, progress
from lightning_cnnviz.activations.mode_switch import ModeSwitch
from lightning_cnnviz.activations.probe_learning import probe_learnt, probe_started
from lightning_cnnviz.activations.sites import SiteInfo
from lightning_cnnviz.core.inputs import scale_text

__all__ = ["TrainingDiagnosis", "Verdict"]


class TrainingDiagnosis(
    DiagnosisState, LogReadings, ModeSwitch, CauseReview, DivergenceReview, GradientReview
):
    """Divergence, gradient and dead-unit rules over a run's logs (state across logs).

    Args:
        dead_threshold: dead (or dormant) share whose crossing is an alert.
        strip_length: dead-strip columns kept.
        tau: the dormant threshold (for the words).
    """

    def __init__(self, dead_threshold: float, strip_length: int, tau: float) -> None:
        self.loss = LossTrace()
        self.history = DeadHistory(dead_threshold, strip_length)
        self.units = UnitEpisodes(dead_threshold, tau)
        self.tau = tau
        self.chance_loss: float | None = None  # ln K, once the first losses sat far above it
        self.init_cause: str | None = None  # the weights' scale at init, when known the cause
        self.cut: tuple[str, str] | None = None  # a gradient of exactly 0 below a layer
        self.first_grads: dict[str, float] = {}  # each layer's first gradient reading
        self.collapse: tuple[tuple[str, ...], float] | None = None  # the layers' gradients gone
        self.init_checked = False  # the initial-scale check ran (once, when K is known)
        self.input_scale: Mapping[str, float] | None = None  # raw inputs' figures (first log)
        self.classes: int | None = None  # K, from the first log's output
        self.loss_scale: float | None = None  # the first loss over the model's cross-entropy
        self.levels = LossLevels()  # the loss series' readings at each log, incremental
        self.last_step = -1  # the step of the previous log
        self.logs: list[int] = []  # the steps of the latest logs, this one's last
        self.rates: tuple[float | None, float | None] = (None, None)  # lr: first log, now
        self.lr_start: float | None = None  # the rate set (a scheduler's ``initial_lr``)
        self.log_rates: list[tuple[int, float]] = []  # (step, lr) of the latest logs
        self.peak_rates: list[tuple[int, float]] = []  # (step, lr) above the rate at a log
        self.log_accs: list[tuple[int, float]] = []  # (step, probe accuracy) of the latest logs
        self.log_losses: list[tuple[int, float]] = []  # (step, probe cross-entropy), likewise
        self.peak_acc: float | None = None  # the best probe accuracy of any log
        self.chance: tuple[int, float] | None = None  # (K, probe cross-entropy): first log
        self.last_epoch = 0
        self._kinds: dict[str, str | None] = {}  # the sites' activation kinds, from the last log
        self._squeezed: list[str] = []  # the sites of squeeze-excite bottlenecks, likewise
        self.first_rms: float | None = None
        self.grad_rise = 1.0
        self.weak_logs = 0  # logs in a row with the gradient fading by the weaker bar
        self.clip: tuple[float | None, str | None] = (None, None)  # value, algorithm
        self.half = self.warmup = False  # 16-bit precision; a warmup in the run's schedule
        self.hooked: tuple[str, ...] = ()  # modules whose gradients pass through a hook
        self.maximize: tuple[str, ...] = ()  # optimisers set to climb the loss
        self._norms: dict[str, float] = {}  # the layers' weight norms at the last log
        self.zeroed: tuple[tuple[str, str, float, float], ...] = ()  # rewritten between logs
        self.rewrite = self._rewrite_before = self.zeroed  # ... at this log or the one before
        self.written = self.zeroed  # changed between a step's end and the next batch's start
        self.frozen_head: str | None = None
        self.diverged: int | None = None  # the step of the first divergence finding
        self.spike: tuple[int, float, float, float] | None = None  # a finite spike it told
        self.spike_acc: float | None = None  # the probe accuracy at the last log before it
        self.spike_rate: float | None = None  # the highest rate of a step before it
        self.transient = -1  # the step of the last spike the run recovered from on its own
        self.harder: int | None = None  # the step the training target got harder, if told
        self.output_told: tuple[int, list[int], int] | None = None  # ``output_activation`` told
        self.recurring: list[int] = []  # late spikes the run came back from (their steps)
        self.pending: int | None = None  # the log that first saw a smoothed spike
        self.crawled = False  # the told spike's loss was told back below its start, unlearnt
        self.nonfinite_told = False
        self.skipped: list[int] = []  # isolated non-finite losses' steps; how many were told:
        self.skipped_told = 0  # (``skipped_losses.py``: no divergence, hunt 115)
        self.reported: dict[str, str] = {}  # kind -> severity already reported
        self.decay: tuple[float | None, float | None] = (None, None)  # per step, weight_decay
        self.decays: tuple[float | None, float | None] = (None, None)  # per step: first log, now
        self.dropouts: tuple[float | None, float | None] = (None, None)  # the highest p: likewise
        self.momentum: float | None = None  # SGD's momentum, Adam's first beta
        self.momenta: tuple[float | None, float | None] = (None, None)  # it: first log, now
        self.eval_layers: list[str] | None = None  # norm/dropout layers in eval mode at a log
        self.mode_switch: tuple[int, int, list[str]] | None = None  # ... switched to it
        self.mode_back: int | None = None  # the log that saw them in training mode again

    def _new(self, kind: str, severity: str) -> bool:
        before = self.reported.get(kind)
        if before == "problem" or before == severity:
            return False
        self.reported[kind] = severity
        return True

    def review(
        self,
        step: int,
        epoch: int,
        figures: Mapping[str, Mapping[str, Tensor]],
        sites: Mapping[str, SiteInfo],
        profile: list[tuple[str, float]],
        bad_parameters: Callable[[], list[str]],
        chance: tuple[int, float] | None = None,
        zero_layers: Sequence[str] = (),
        norms: Mapping[str, float] | None = None,
        reach: Mapping[str, float] | None = None,
        written: Sequence[tuple[str, str, float, float]] = (),
        identical_layers: Sequence[str] = (),
        negative_layers: Sequence[str] = (),
        frozen_norms: Sequence[str] = (),
        leftover: float | None = None,
        input_scale: Mapping[str, float] | None = None,
        lr: float | None = None,
        lr_start: float | None = None,
        lr_peak: tuple[int, float] | None = None,
        output_site: str | None = None,
        decay: tuple[float | None, float | None] = (None, None),
        clip: tuple[float | None, str | None] = (None, None),
        momentum: float | None = None,
        frozen_head: str | None = None,
        probe_acc: float | None = None,
        probe_loss: float | None = None,
        clipped: Sequence[int] = (),
        half: bool = False,
        warmup: bool = False,
        hooked: tuple[str, ...] = (),
        dropout: float | None = None,
        maximize: tuple[str, ...] = (),
        before_update: bool = False,
        modes: tuple[list[str], list[str]] | None = None,
        init_growth: float | None = None,
    ) -> list[Verdict]:
        """One log's verdicts (``bad_parameters`` lists non-finite parameters, when asked).

        ``chance``: ``(K, the probe's cross-entropy)`` where the probe has class labels for
        an output of ``K`` logits (``wants_chance``), else None (the initial-scale check is
        skipped). Read with ``chance`` (at the first log): ``zero_layers``, the layers whose
        weights are all zero; ``identical_layers``, those whose units all hold the same
        weights (``init_weights.identical_units``); ``negative_layers``, those whose biases
        start far below zero (``init_weights.negative_biases``); ``frozen_norms``, the
        BatchNorm layers held in eval mode with their initial statistics
        (``frozen_norms.py``). ``norms``: the layers' norms (``rewrites.weight_norms``), and
        ``reach``, the norms of the optimiser's update a step (``rewrites.update_reach``);
        ``written``: layers whose norm changed between the last event's update and the next
        batch (``rewrites.written_between``). ``leftover``:
        the largest gradient found before this step's
        first backward (``carry_over.py``), where it was looked for. ``input_scale``: the
        probe inputs' figures where they are far from unit scale
        (``core.inputs.raw_scale``), read at the first log: a note. ``lr``: the learning
        rate now (a rate a schedule raised before a divergence is named as its cause);
        ``lr_start``: the rate set (a rate cut 10x or more below it is named behind silent
        units); ``lr_peak``: ``(step, rate)``, the highest rate of a step since the last log
        (one raised between two logs is seen at neither).
        ``output_site``: the activation whose output is the model's (a ReLU on the logits):
        its silent units are classes, told as ``output_activation``, not as dead units.
        ``decay``: the optimiser's decoupled weight decay per step and its ``weight_decay``
        (``core.settings``; ``None``: none, or Adam's L2). ``momentum``: the optimiser's
        (``HIGH_MOMENTUM`` or more is named as the cause of silent units). ``frozen_head``:
        the model's first weight layer where it is frozen (no vanishing gradients then).
        ``probe_acc``: the model's accuracy on the probe images now (a loss that steps up
        while it holds is a harder training target, not a divergence); ``probe_loss``: its
        cross-entropy there (a loss that rises while it falls is weighted anew). ``clipped``: the
        classes whose logit is 0 on every probe image, no logit below 0
        (``output_activation.clipped_classes``). ``half``: the run trains in 16-bit
        precision; ``warmup``: its schedule warms the rate up (the remedies fit them).
        ``hooked``: the modules whose parameters carry gradient hooks (a divergence with no
        other cause names them). ``before_update``: ``profile`` was read before the fit's
        first update, where a factor initialised at 0 (LoRA's ``B``, a zero residual gate)
        holds the gradient of what feeds it at exactly 0: no cut is told from it. ``modes``:
        the norm and dropout layers in eval mode now (``mode_switch.eval_mode_layers``).
        ``init_growth``: the weights' scale at step 0 (``initial_scale.init_growth``), read
        with ``chance``: a first loss far above ``ln K`` from weights at a standard scale is
        a loss scaled, the cause a divergence names.
        """
        series = self._finite_losses(self.loss.read(), figures, bad_parameters)  # hunt 115
        self.chance = self.chance or chance
        if chance is not None and self.classes is None:  # K, for every rule of this log on
            self.classes = chance[0]
        self.logs = [*self.logs[-3:], step]  # a spike is seen up to two logs on
        self._note_rates(step, lr, lr_peak)
        self.lr_start = lr_start if lr_start is not None else self.lr_start
        self._note_probe(step, probe_acc, probe_loss)
        kinds = {site: info.kind for site, info in sites.items()}
        self._squeezed = sorted(site for site, info in sites.items() if info.squeezed)
        alerts = self.history.update(figures, kinds)
        out, claimed = self._output_activation(step, epoch, output_site, kinds, clipped)
        alerts = [a for a in alerts if not (claimed and a[0] == output_site)]
        widths = {site: f["active_share"].numel() for site, f in figures.items()}
        dying = die_off(alerts, widths)
        if leftover and self._new("gradients_not_reset", "problem"):  # the cause of what follows
            kind, message, fig = carry_over_verdict(leftover, step, epoch)
            out.append(Verdict(kind, "problem", message, fig))
        self.input_scale = input_scale or self.input_scale  # the initial-scale check reads it
        if input_scale and self._new("unnormalised_inputs", "note"):
            text, fig = scale_text(input_scale), dict(input_scale)
            out.append(Verdict("unnormalised_inputs", "note", text, fig))
        self._note_settings(decay, clip, momentum, dropout, half, warmup, hooked, maximize)
        self.first_grads = first_readings(self.first_grads, profile)
        self.collapse = None if before_update else collapsed(profile, self.first_grads)
        if norms is not None:  # weights collapsed since the last log: rewritten
            self._note_norms(step, norms, reach, written)
        out += self._skipped_note(step, epoch)
        drops = self._note_modes(step, modes)  # before a divergence, which may follow it
        out += self._scaled_start(step, epoch, series, chance, init_growth)  # its cause too
        out += self._divergence(
            step, epoch, series, figures, profile, alerts, bad_parameters, dying
        )
        out += self._switch_note(step, epoch, drops)
        previous, self.last_step, self.last_epoch, self._kinds = self.last_step, step, epoch, kinds
        if self.diverged is not None:
            return out  # what follows a divergence is its consequence
        self._zero_init(zero_layers)
        out += self._symmetric(step, epoch, identical_layers)
        out += self._negative_bias(step, epoch, negative_layers, figures)
        if frozen_norms and self._new("frozen_batch_norm", "problem"):
            text = frozen_norms_text(frozen_norms, step, epoch)
            out.append(Verdict("frozen_batch_norm", "problem", text, {"layers": len(frozen_norms)}))
        out += self._initial_scale(step, epoch, series, chance)
        gain = self._progress(series)
        self.frozen_head = frozen_head
        out += self._weight_decay(step, epoch, gain, lr)
        found, falling = self._gradients(
            step, epoch, series, figures, profile, kinds, dying, zero_layers, previous, gain
        )
        out += found
        if self.pending is not None and self.pending >= previous:
            self.units.hold(alerts)  # a spike waits for its confirmation: maybe part of it
            return out
        self.cut = None if before_update else gradient_cut(profile, self.history.previous)
        cause, remedies = self._cause(series, gain)
        falling = self._fell(series, previous, gain, falling)
        return out + self._claim(self.units.review(
            step, epoch, alerts, self.history.previous, kinds, self.history.dead, gain,
            cause, remedies=remedies, squeezed=self._squeezed, falling=falling,
            early_fall=progress(series, least=2 * SMOOTH) if gain is None else None,
            consequence=self.cut is not None,
            learnt=probe_learnt(self.log_accs, step, self.classes, self.levels.near_low()),
            probe=probe_started(
                self.log_losses, self.log_accs, step, self.classes, self.levels.near_low()
            ),
        ), cause)  # fmt: skip

    def conclude(
        self,
        bad_parameters: Callable[[], list[str]] = list,
        step: int | None = None,
        epoch: int = 0,
        lr: float | None = None,
        lr_peak: tuple[int, float] | None = None,
    ) -> list[Verdict]:
        """At the end of fit (``step``, ``epoch``): what the steps since the last log show.

        A loss that turned non-finite (or blew up ``JUMP`` x in one step) after the last
        log is a divergence told now: the model fit hands back is broken, and no later
        log will see it (a NaN batch at step 600 of 644, the last log at 600, ended
        "no problems found"). ``bad_parameters`` lists the non-finite parameters.
        Then the alerts held at the last log, judged as they stood there: no later log
        will confirm or clear them (a run whose last log is its first alert, or a spike
        still unconfirmed): the units were silent at the last log, which is all the run
        has to say. ``lr`` / ``lr_peak``: the rate now and the highest since, as at a log
        (hunt 49: raised 100x, then EarlyStopping: told as "one batch or one operation").
        """
        series = self._finite_losses(self.loss.read(), {}, bad_parameters, final=True)
        out = self._skipped_note(self.last_step if step is None else step, epoch, final=True)
        if self.diverged is None and step is not None and step > self.last_step:
            self._note_rates(step, lr, lr_peak)
            out += self._divergence(step, epoch, series, {}, [], [], bad_parameters, {})
            if out:
                self.last_step, self.last_epoch = step, epoch
        if not self.units.held or self.diverged is not None:
            return out
        gain = self._progress(series)
        cause, remedies = self._cause(series, gain)
        return out + self._claim(self.units.review(
            self.last_step, self.last_epoch, [], self.history.previous, self._kinds,
            self.history.dead, gain, cause, remedies=remedies, squeezed=self._squeezed,
            final=True,
            learnt=probe_learnt(
                self.log_accs, self.last_step, self.classes, self.levels.near_low()
            ),
            probe=probe_started(
                self.log_losses, self.log_accs, self.last_step, self.classes,
                self.levels.near_low(),
            ),
        ), cause)  # fmt: skip
