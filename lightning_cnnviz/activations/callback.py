"""``ActivationMonitor``: per-layer activation statistics and dead-unit detection over time."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.divergence import nonfinite_parameters
from lightning_cnnviz.activations.draw import dead_strip_image
from lightning_cnnviz.activations.first_log import first_log_reads
from lightning_cnnviz.activations.grad_reads import GradReads, frozen_head
from lightning_cnnviz.activations.mode_switch import eval_mode_layers
from lightning_cnnviz.activations.output_activation import clipped_classes
from lightning_cnnviz.activations.recorder import Recorder, site_scalars
from lightning_cnnviz.activations.rewrites import update_reach, weight_norms, written_between
from lightning_cnnviz.activations.sites import fallback_layers
from lightning_cnnviz.activations.telling import Telling
from lightning_cnnviz.activations.window import TrainingWindow
from lightning_cnnviz.core.activation_kind import is_activation
from lightning_cnnviz.core.checks import check_choice, check_int, check_number
from lightning_cnnviz.core.findings import Finding
from lightning_cnnviz.core.input_form import batch_hooks
from lightning_cnnviz.core.layer_calls import count_call_sites
from lightning_cnnviz.core.layer_types import ACTIVATION_TYPES
from lightning_cnnviz.core.logits import class_scores
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.core.probe_pass import follows_step
from lightning_cnnviz.core.say import say
from lightning_cnnviz.core.selection import of_type, unwrap_model
from lightning_cnnviz.core.settings import settings_of
from lightning_cnnviz.core.trace_images import trace_images
from lightning_cnnviz.core.voice import listed
from lightning_cnnviz.core.weight_leaves import held_by


class ActivationMonitor(Telling, TrainingWindow, Monitor, section="activations"):
    """Per-layer activation statistics with dead- and dormant-unit detection.

    A unit (conv channel, linear unit) is dead when it is active (``> eps``; ``|a| > eps``
    for Tanh-like activations) on no entry of the last ``window`` training batches
    before a logging step (hooked only then) nor of the probe set; under DDP a unit
    active on any rank is alive. Tags and how to read them: ``docs/activations.md``.
    ``timings["window"]`` adds up the seconds spent on the window's statistics.

    Args:
        layers: ``"auto"`` = every activation module (else conv/BN/linear outputs).
        window: training batches sampled before each logging step.
        eps: activity threshold.
        tau: dormant when a channel's mean ``|a|`` is below ``tau`` x the layer's.
        dead_threshold: dead fraction that triggers the diagnosis (so does a rise
            of more than 0.1 since the last log).
        histograms: also log subsampled histograms of the probe activations.
        strip_length: logs kept in the ``dead_strip`` image (oldest dropped).
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``num_samples``, ``tag_prefix``,
            ``strict``, ``seed``, ``budget``).

    Example::

        >>> from lightning_cnnviz import ActivationMonitor
        >>> monitor = ActivationMonitor(every_n_steps=50, window=8)
        >>> monitor.tag("relu1", "dead_fraction")
        'activations/relu1/dead_fraction'
    """

    all_ranks = True  # dead masks are reduced across ranks, every rank on the same schedule
    needs_call_sites = False  # traced before the first window instead (``_trace``)

    def __init__(
        self,
        layers: str | list[str] = "auto",
        window: int = 8,
        eps: float = 0.0,
        tau: float = 0.025,
        dead_threshold: float = 0.25,
        histograms: bool = False,
        strip_length: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, **kwargs)
        check_int("window", window)
        check_number("eps", eps, low=0.0)
        check_number("tau", tau, low=0.0, high=1.0)
        check_number("dead_threshold", dead_threshold, low=0.0, high=1.0)
        check_choice("histograms", histograms, [False, True])
        check_int("strip_length", strip_length)
        self.window, self.eps, self.tau, self.dead_threshold = window, eps, tau, dead_threshold
        self.histograms, self.strip_length, self.fallback = histograms, strip_length, False
        self.reset()

    @override
    def run_state_dropped(self, state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "_rec": Recorder(self.eps, self.histograms)}  # it holds the model

    @override
    def reset(self) -> None:
        self._rec = Recorder(self.eps, self.histograms)
        self.diagnosis = TrainingDiagnosis(self.dead_threshold, self.strip_length, self.tau)
        self.history = self.diagnosis.history
        self._grads_due = self._mute = False
        self._stepped = False  # an optimizer step since the last backward (``carry_over.py``)
        self._loss_read = False  # an optimizer step in this batch: its loss is read
        self._backward_seen = False  # a backward ran with one optimizer (a loss to read)
        self._leftover: Tensor | None = None  # gradients found before a logging step's backward
        self._backward_loss: Tensor | None = None  # this batch's loss, as backward saw it
        # the batch's step and epoch as Lightning logs them (before its optimizer step)
        self._batch_at = (0, 0)
        self._peak_rate: tuple[int, float] | None = None
        self._last_rate: float | None = None
        self._findings: dict[str, Finding] = {}  # the last reported finding of each kind
        self._compiled: bool | None = None  # known at the first training batch
        self._norms_at_end = self._norms_across = None  # ``TrainingWindow``: written between
        self._start_growth: Tensor | None = None  # ``TrainingWindow``: the weights at step 0

    @override
    def watched_modules(self) -> dict[str, nn.Module]:
        return {**self._rec.traced, **self.selected}  # producers, the depth profile's layers

    @override
    def layers_found(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rec.forget()  # the call sites, producers and depth order traced anew

    @property
    def dead_channels(self) -> dict[str, list[int]]:
        """Dead channels per call site at the last log."""
        return self.history.dead

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        known = set(of_type(*ACTIVATION_TYPES)(model, available))
        # timm's GELU/Swish classes and users' own: recognised by what they compute
        found = [n for n, m in available.items() if n in known or is_activation(m)]
        if found and not self._any_called(model, {n: available[n] for n in found}):
            # modules defined and never used (forward rectifies with `clamp` or `where`): what
            # forward computes is the conv and linear outputs (setups hunt 20: nothing recorded)
            self.warn_once(
                "unused",
                f"its activation modules ({listed(found)}) are never called by the model's "
                "forward(): it watches the conv and linear outputs instead (dead = never "
                "positive)",
            )
            found = []
        self.fallback = not found
        return found or fallback_layers(available)

    def _any_called(self, model: nn.Module, layers: dict[str, nn.Module]) -> bool:
        """Whether one probe sample's forward calls any of ``layers`` (True: cannot tell)."""
        try:
            x = self.probe_input(self._trainer_ref, model)[: trace_images(model)]
            counts = count_call_sites(model, layers, lambda: model(x))
        except Exception:  # no probe yet, or a forward the monitors cannot call: said later
            return True
        return any(counts.values())

    @override
    def describe_layers(self) -> str:
        note = " No activation module: conv/BN/linear outputs, dead = *never positive*."
        return super().describe_layers() + (note if self.fallback else "")

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._rec.failure is not None:  # a failure inside the window's hooks
            raise self._rec.failure
        if self._rec.stale:  # a layer re-made at another width: its statistics start anew
            self.warn_once(
                f"width:{trainer.global_step}",
                f"a watched layer changed its number of channels by step {trainer.global_step}:"
                " the layers are traced anew and their statistics start again there",
            )
            self._rec.forget()
        self._trace(trainer, pl_module)
        with self.phase("capture"):
            x = self.probe_input(trainer, pl_module)
            unscored = self._unscored(trainer, pl_module)
            self._rec.probe(unwrap_model(pl_module), self.selected, x, scores=not unscored)
        with self.phase("compute"):  # collectives on every rank, then one host transfer
            figures, grads = self._rec.gather(self.tau)
        if not trainer.is_global_zero:
            self.diagnosis.loss.drop()
        if trainer.is_global_zero and not self._mute:
            try:
                self._publish(trainer, pl_module, figures, grads)
            except Exception as err:
                if self.strict or trainer.world_size == 1:
                    raise
                self._mute = True  # keep joining the collectives, or the other ranks would wait
                say(f"ActivationMonitor stops writing (training goes on): {err!r}")

    def _unscored(self, trainer: Trainer, pl_module: LightningModule) -> str:
        """Why the model's output holds no class scores ("": it may), said once.

        ``ProbeReader.logits_key``'s read, the one every monitor makes: features returned
        with the head applied in the steps are no logits, their zeros no classes (held-out
        hunt 117: a ReLU'd (N, 64) feature vector told "6 of its outputs (classes 6, 9, 14,
        20, 31, 36) are 0", a problem, on a run at 96.6% val accuracy with 10 classes).
        """
        try:
            self.logits_key(trainer, pl_module)
        except Exception:  # no probe, or a forward the monitors cannot call: as before
            return ""
        if self.scores_misfit:
            self.warn_once("scores_misfit", "the check of an activation on the logits does "
                           f"not run: {self.scores_misfit}.")  # fmt: skip
        return self.scores_misfit

    def _publish(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        figures: dict[str, dict[str, Tensor]],
        grads: dict,
    ) -> None:
        step, epoch, scalars = trainer.global_step, trainer.current_epoch, {}
        profile = GradReads.split_profile(grads)
        for site, f in figures.items():
            values = site_scalars(f, self._rec.sites[site], grads)
            scalars.update({self.tag(site, key): value for key, value in values.items()})
            if values["nonfinite"] > 0:
                self.warn_once("nonfinite", f"non-finite activations in `{site}` ({step=})")
        model = unwrap_model(pl_module)
        leftover, self._leftover = self._leftover, None
        across, self._norms_across = self._norms_across, None
        written = written_between(across[0], *(t.tolist() for t in across[1:])) if across else []
        settings = settings_of(trainer, model)
        scores = class_scores(self._rec.logits, self.probe(trainer).labels)
        held = held_by(trainer.optimizers, moved=True)  # the layers the optimiser moves
        reach = update_reach(model, self._rec.depth, trainer.optimizers, held)
        verdicts = self.diagnosis.review(
            step, epoch, figures, self._rec.sites, profile,
            lambda: nonfinite_parameters(list(model.named_parameters())),
            leftover=None if leftover is None else float(leftover),
            lr=settings.lr_top, lr_start=settings.lr_top_initial, lr_peak=self.take_peak_rate(),
            decay=(settings.decay_per_step, settings.weight_decay),
            clip=(settings.grad_clip, settings.clip_algorithm), momentum=settings.momentum,
            output_site=self._rec.output_site, frozen_head=frozen_head(model, self._rec.depth),
            probe_acc=scores and scores[1], probe_loss=scores and scores[2],
            clipped=clipped_classes(self._rec.logits),
            half=settings.half_weights or str(trainer.precision).startswith("16"),
            warmup=settings.warmup, dropout=settings.dropout, hooked=settings.hooked,
            maximize=settings.maximize, written=written,
            norms=weight_norms(model, self._rec.depth, held), reach=reach,
            before_update=self._rec.grads.before_update, modes=eval_mode_layers(model),
            **self._start(trainer, model, scores),
        )  # fmt: skip
        scalars.update({self.tag(name, "grad_rms"): value for name, value in profile})
        self.sink.scalars(scalars, step)  # the training thread's work first, then the sink's
        with self.phase("render"):  # strips are new tensors each log: safe to hand over
            strips = {site: self.history.strips[site] for site in figures}
            units = {site: figures[site]["active_share"].numel() for site in figures}
            self.in_background(lambda: self._draw_strips(strips, units, step))
            for site in figures:
                if (sample := self._rec.samples.pop(site, None)) is not None:
                    self.sink.histogram(self.tag(site, "histogram"), sample, step)
            if self._rec.histograms and self.sink.without_tensorboard():
                self.warn_once("histograms", "histograms need a TensorBoard logger: none written")
        self._tell(trainer, verdicts, step, epoch)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.disabled and not self._mute and trainer.is_global_zero:
            self.conclude(trainer, pl_module)
        super().on_fit_end(trainer, pl_module)

    def _start(
        self, trainer: Trainer, model: nn.Module, scores: tuple[int, float, float] | None
    ) -> dict[str, Any]:
        """The first log's reads (``first_log.first_log_reads``); none without class labels."""
        if not self.diagnosis.wants_chance():
            return {}
        # the probes skip the run's batch-transfer hooks and training step: where those scale
        # the inputs, raw pixels are not what training sees (setups hunts 24 and 33)
        outside = batch_hooks(trainer) or follows_step(model)
        split = self._training_split(trainer)
        images = None if outside else self.probe(trainer, split).images
        n = trace_images(model)  # one sample, unless a BatchNorm keeps no statistics
        run = lambda: model(self.probe_input(trainer, model, split)[:n])  # noqa: E731
        growth = self._start_growth  # read at step 0 (``TrainingWindow``)
        return first_log_reads(model, self._rec.depth, images, scores, run, growth)

    def _training_split(self, trainer: Trainer) -> str:
        """The train probe's split where it can be read (else the val one's): what training sees.

        The inputs' scale is told of the training inputs (hunt 106: val images left in
        [0, 255] beside normalised training ones were told "the inputs are far from unit
        scale ... divergence and dead units likelier", of the training run).
        """
        try:
            self.probe(trainer, "train")
        except Exception:  # no training set the probes can read (an iterable one)
            return "val"
        return "train"

    def _draw_strips(self, strips: dict[str, Tensor], units: dict[str, int], step: int) -> None:
        for site, history in strips.items():  # on the sink's thread
            image = dead_strip_image(history, units[site], title=site)
            self.sink.image(self.tag(site, "dead_strip"), image, step)

    @override
    def extra_state(self) -> dict[str, Any]:
        return self.diagnosis.state_dict()

    @override
    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.diagnosis.load_state_dict(state)
        self._findings = {f.kind: f for f in self._own_findings()}  # the last of each kind
