"""``ActivationMonitor``: per-layer activation statistics and dead-unit detection over time."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.activations.carry_over import leftover_gradient
from lightning_cnnviz.activations.diagnose import TrainingDiagnosis, Verdict
from lightning_cnnviz.activations.divergence import nonfinite_parameters
from lightning_cnnviz.activations.draw import dead_strip_image
from lightning_cnnviz.activations.gradients import zero_weights
from lightning_cnnviz.activations.loss_trace import loss_of
from lightning_cnnviz.activations.recorder import Recorder, batches_to_log, site_scalars
from lightning_cnnviz.activations.sites import fallback_layers
from lightning_cnnviz.core.activation_kind import is_activation
from lightning_cnnviz.core.checks import check_choice, check_int, check_number
from lightning_cnnviz.core.findings import Finding, earlier_cause, record_check, replace, report
from lightning_cnnviz.core.inputs import raw_scale
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.core.selection import (
    ACTIVATION_TYPES,
    is_compiled,
    named_layers,
    of_type,
    unwrap_model,
)


class ActivationMonitor(Monitor, section="activations"):
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
    def reset(self) -> None:
        self._rec = Recorder(self.eps, self.histograms)
        self.diagnosis = TrainingDiagnosis(self.dead_threshold, self.strip_length, self.tau)
        self.history = self.diagnosis.history
        self._grads_due = self._mute = False
        self._stepped = False  # an optimizer step since the last backward (``carry_over.py``)
        self._leftover: Tensor | None = None  # gradients found before a logging step's backward
        self._backward_loss: Tensor | None = None  # this batch's loss, as backward saw it
        self._findings: dict[str, Finding] = {}  # the last reported finding of each kind
        self._compiled: bool | None = None  # known at the first training batch

    @property
    def dead_channels(self) -> dict[str, list[int]]:
        """Dead channels per call site at the last log."""
        return self.history.dead

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        known = set(of_type(*ACTIVATION_TYPES)(model, available))
        # timm's GELU/Swish classes and users' own: recognised by what they compute
        found = [n for n, m in available.items() if n in known or is_activation(m)]
        self.fallback = not found
        return found or fallback_layers(available)

    @override
    def describe_layers(self) -> str:
        note = " No activation module: conv/BN/linear outputs, dead = *never positive*."
        return super().describe_layers() + (note if self.fallback else "")

    def _trace(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._rec.sites:
            x = self.probe_input(trainer, pl_module)[:1]
            self._rec.trace(unwrap_model(pl_module), self.selected, x)
            self._call_counts, self.shared = self._rec.counts, self._rec.shared
            unused = [name for name in self.selected if not self._call_counts.get(name)]
            if unused:  # e.g. a GAN's generator, where forward() is the discriminator
                names = ", ".join(f"`{n}`" for n in unused[:4])
                more = f" and {len(unused) - 4} more" if len(unused) > 4 else ""
                self.warn_once(
                    "unused",
                    f"not called by the model's forward(), so not recorded: {names}{more} (e.g. "
                    "a GAN's generator when forward() is the discriminator); the monitor "
                    "watches what forward() computes",
                )

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: Any) -> None:
        self._rec.detach()  # hooks come off after every batch, on failure and at the end
        super().on_exception(trainer, pl_module, exception)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._rec.detach()
        super().teardown(trainer, pl_module, stage)

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._rec.detach()
        if self.disabled or trainer.sanity_checking or self._rec.failure is not None:
            return
        ahead = batches_to_log(
            trainer.global_step, batch_idx, trainer.accumulate_grad_batches,
            trainer.num_training_batches, self.schedule.next_step(trainer.global_step),
            self.schedule.due_after_epoch(trainer.current_epoch),
        )  # fmt: skip
        self._grads_due = ahead is not None and ahead[0] == ahead[1]
        if ahead is None or ahead[0] > self.window:
            return
        try:
            self._trace(trainer, pl_module)
            if not self._probe_only(pl_module):
                self._rec.attach(self.selected)  # detached in on_train_batch_end / on_exception
        except Exception as err:
            self._rec.failure = err  # raised in log_event: the base warns and steps aside

    def _probe_only(self, pl_module: LightningModule) -> bool:
        """Under ``torch.compile`` the window's hooks would see stale or no batches: say so."""
        if self._compiled is None:
            self._compiled = is_compiled(pl_module)
            if self._compiled:
                self.warn_once(
                    "compiled",
                    "the model runs through torch.compile, where hooks on training steps see "
                    "the wrong batches; dead units and statistics come from the "
                    f"{self.num_samples} probe images only (eager probe passes).",
                )
        return self._compiled

    @override
    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: Tensor
    ) -> None:
        first, self._stepped = self._stepped, False  # the first backward after a step
        if len(trainer.optimizers) != 1 or self.disabled:
            return  # several optimizers (a GAN): neither the loss nor the gradients are one's
        self._backward_loss = loss.detach()  # the loss, where training_step returns none
        if first and self._grads_due:
            self._leftover = leftover_gradient(trainer.optimizers[0])  # read at the log

    @override
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        self._stepped = True
        if self._grads_due and not self.disabled:
            self._rec.read_grads(unwrap_model(pl_module))

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._rec.detach()
        if not self.disabled and not trainer.sanity_checking:
            # manual optimisation may return nothing: the loss its backward saw instead
            loss = outputs if loss_of(outputs) is not None else self._backward_loss
            self.diagnosis.loss.add(trainer.global_step, loss)  # a reference: no sync
        self._backward_loss = None
        if self._rec.window_seconds:  # the window's share of the cost, beside the events'
            self.timings["window"] += self._rec.window_seconds
            self.budget.add(self._rec.window_seconds)
            self._rec.window_seconds = 0.0
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._rec.failure is not None:  # a failure inside the window's hooks
            raise self._rec.failure
        self._trace(trainer, pl_module)
        with self.phase("capture"):
            x = self.probe_input(trainer, pl_module)
            self._rec.probe(unwrap_model(pl_module), self.selected, x)
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
                rank_zero_warn(f"ActivationMonitor stops writing (training goes on): {err!r}")

    def _publish(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        figures: dict[str, dict[str, Tensor]],
        grads: dict,
    ) -> None:
        step, epoch, scalars = trainer.global_step, trainer.current_epoch, {}
        profile = self._rec.split_profile(grads)
        for site, f in figures.items():
            values = site_scalars(f, self._rec.sites[site], grads)
            scalars.update({self.tag(site, key): value for key, value in values.items()})
            if values["nonfinite"] > 0:
                self.warn_once("nonfinite", f"non-finite activations in `{site}` ({step=})")
        model = unwrap_model(pl_module)
        leftover, self._leftover = self._leftover, None
        verdicts = self.diagnosis.review(
            step, epoch, figures, self._rec.sites, profile,
            lambda: nonfinite_parameters(list(model.named_parameters())),
            leftover=None if leftover is None else float(leftover),
            **self._start(trainer, model),
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
        self._tell(trainer, verdicts, step, epoch)

    def _tell(self, trainer: Trainer, verdicts: list[Verdict], step: int, epoch: int) -> None:
        """Write the verdicts' text, warn the problems and report them as findings."""
        for v in verdicts:  # a problem told after a root cause stood names it
            if v.severity == "problem" and (cause := earlier_cause(trainer, v.kind)):
                v.message = f"{v.message} {cause}"
        if verdicts:  # one text per log: TensorBoard keeps one entry per tag and step
            self.sink.text(self.tag("diagnosis"), "\n\n".join(v.message for v in verdicts), step)
        for v in verdicts:
            if v.severity == "problem":  # notes go to the summary and the text only
                rank_zero_warn(v.message)
            finding = Finding(self.section, v.kind, step, epoch, v.message, v.figures,
                              severity=v.severity)  # fmt: skip
            old = self._findings.get(v.kind)
            if v.change == "gone" and old is not None:
                replace(trainer, old, finding)  # an episode that ended: its note replaces it
            else:
                report(trainer, finding)
            self._findings[v.kind] = finding

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.disabled and not self._mute and trainer.is_global_zero:
            verdicts = self.diagnosis.conclude()  # before the summary: held alerts are told
            self._tell(trainer, verdicts, self.diagnosis.last_step, self.diagnosis.last_epoch)
            if self.events and not self.diagnosis.loss.series:
                why = (
                    "needs the training loss: `training_step` returned none, and the run has "
                    f"{len(trainer.optimizers)} optimizers (one backward's loss stands in "
                    "for a single one); return the loss, e.g. `{'loss': loss.detach()}`"
                )
                record_check(trainer, type(self).__name__, "divergence", False, why)
                self.warn_once("no_loss", f"the divergence check did not run: it {why}.")
        super().on_fit_end(trainer, pl_module)

    def _start(self, trainer: Trainer, model: nn.Module) -> dict[str, Any]:
        """What the first log's checks read: ``chance``, zero layers, the inputs' scale."""
        if not self.diagnosis.wants_chance():
            return {}
        layers = named_layers(model)
        named = [
            (n, w)
            for n in self._rec.depth
            if isinstance(w := getattr(layers.get(n), "weight", None), Tensor)
        ]
        scale = raw_scale(self.probe(trainer).images)
        return {"chance": self._chance(trainer), "zero_layers": zero_weights(named),
                "input_scale": scale}  # fmt: skip

    def _chance(self, trainer: Trainer) -> tuple[int, float] | None:
        """``(K, cross-entropy of the probe's logits)`` when the probe has labels for K logits.

        K is the width of the model's output on the probe; the labels must be class
        indices below it. Else None: the initial-scale check is skipped.
        """
        logits, labels = self._rec.logits, self.probe(trainer).labels
        if logits is None or labels is None or labels.ndim != 1 or len(labels) != len(logits):
            return None
        k = logits.shape[1]
        if k < 2 or int(labels.min()) < 0 or int(labels.max()) >= k:
            return None
        loss = F.cross_entropy(logits.float(), labels.to(logits.device))
        return k, float(loss)

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
