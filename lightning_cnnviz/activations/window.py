"""The training-batch hooks of ``ActivationMonitor``: the window opened and closed.

``TrainingWindow`` is a part of ``ActivationMonitor`` (a mixin, as the monitors' parts
are): at each training batch it asks ``batches_to_log`` whether the window
before the next log has opened, traces the call sites before the first one and hooks
the watched layers for that batch only (``recorder.Recorder``; not under
``torch.compile``, where the probe pass stands alone). It keeps the loss each backward
saw (for a ``training_step`` that returns none), reads the gradients left from before
the logging step's first backward (``carry_over.py``), the weight gradients before
its optimizer step and the weights' scale before the fit's first update
(``initial_scale.init_growth``), and hands each batch's loss to the diagnosis. Hooks come
off after every batch, on an exception and at teardown.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_cnnviz.activations.carry_over import leftover_gradient
from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.initial_scale import init_growth
from lightning_cnnviz.activations.recorder import Recorder
from lightning_cnnviz.activations.rewrites import norm_tensor
from lightning_cnnviz.core.batches import batch_inputs
from lightning_cnnviz.core.layer_calls import ALONE
from lightning_cnnviz.core.main_group import fastest_group
from lightning_cnnviz.core.schedule import batches_to_log
from lightning_cnnviz.core.selection import is_compiled, unwrap_model
from lightning_cnnviz.core.step_loss import step_loss
from lightning_cnnviz.core.voice import listed
from lightning_cnnviz.core.weight_leaves import held_by

__all__ = ["TrainingWindow"]


class TrainingWindow:
    """The training-batch hooks that record the window (a part of ``ActivationMonitor``).

    Uses the monitor's ``window``, ``selected``, ``schedule``, ``disabled``,
    ``probe_input``, ``warn_once``, ``timings`` and ``budget``, and keeps on it what a
    log reads: the recorder (``_rec``), the carried-over gradient (``_leftover``) and
    the diagnosis's loss trace.
    """

    _rec: Recorder
    diagnosis: TrainingDiagnosis
    _grads_due: bool
    _stepped: bool
    _loss_read: bool  # the batch's loss is read: an optimizer step came after its backwards
    _backward_seen: bool
    _leftover: Tensor | None
    _backward_loss: Tensor | None
    _compiled: bool | None
    _batch_at: tuple[int, int]
    _peak_rate: tuple[int, float] | None  # (step, the highest rate of a step since the last log)
    _last_rate: float | None  # the rate of the last step run
    events: int
    # the layers' norms at an event's step end, then with those at the next batch's start
    _norms_at_end: tuple[list[str], Tensor] | None
    _norms_across: tuple[list[str], Tensor, Tensor] | None
    _start_growth: Tensor | None  # the weights' scale before the fit's first update

    def _trace(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._rec.sites:
            x = self.probe_input(trainer, pl_module)  # a branch one image takes is traced
            self._rec.trace(unwrap_model(pl_module), self.selected, x)
            self._call_counts, self.shared = self._rec.counts, self._rec.shared
            unused = [name for name in self.selected if not self._call_counts.get(name)]
            if unused:  # e.g. a GAN's generator, where forward() is the discriminator
                names = listed(unused)
                self.warn_once(
                    "unused",
                    f"not called by the model's forward() in eval mode (the probe passes), so "
                    f"not recorded: {names} (e.g. a GAN's generator when forward() is the "
                    "discriminator, a branch taken in training mode only, or one none of the "
                    f"first {ALONE} probe images takes alone); the monitor "
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
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        self._rec.detach()
        self._batch_at = (trainer.global_step, trainer.current_epoch)
        if self._norms_at_end is not None:  # no update since the last event's step ended
            names, before = self._norms_at_end
            held = held_by(trainer.optimizers, moved=True)
            now, after = norm_tensor(unwrap_model(pl_module), self._rec.depth, held)
            self._norms_across = (names, before, after) if now == names else None
            self._norms_at_end = None
        if self.disabled or trainer.sanity_checking or self._rec.failure is not None:
            return
        if self._layers_pending:  # lazy modules: no pass before the run's first step
            return
        if trainer.global_step == 0 and batch_idx == 0 and not trainer.current_epoch:
            # before any update, on the device (read at the first log): a first loss far
            # above chance from weights at a standard scale is a loss scaled (held-out hunt
            # 122: SGD blew the weights up at step 1, before the first log could read them)
            try:
                self._start_growth = init_growth(list(unwrap_model(pl_module).named_modules()))
            except Exception:  # weights the read cannot take: the loss's scale is read as before
                self._start_growth = None
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
        # the loss, where training_step returns none: the sum of the batch's backwards up
        # to its first optimizer step (setups hunt 40: a small penalty's second backward
        # was read as the whole loss, and its level as a divergence; setups hunt 41: an
        # LBFGS closure's evaluations, each followed by the hook, summed to 11x the loss)
        self._backward_seen = True
        if not self._loss_read:
            kept, loss = self._backward_loss, loss.detach()
            same = kept is not None and kept.shape == loss.shape and kept.device == loss.device
            self._backward_loss = kept + loss if same else loss
        if first and self._grads_due:
            self._leftover = leftover_gradient(trainer.optimizers[0])  # read at the log

    @override
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        self._stepped = self._loss_read = True
        group = fastest_group(optimizer)  # the fastest weights' rate, as ``Settings.lr_top``
        rate = group.get("lr") if group is not None else None
        first = trainer.optimizers and optimizer is trainer.optimizers[0]
        if first and isinstance(rate, int | float):  # a number (Adadelta's 1 too): no sync
            self._last_rate = rate = float(rate)
            if rate > (self._peak_rate or (0, -1.0))[1]:
                self._peak_rate = (trainer.global_step, rate)
        if self._grads_due and not self.disabled:
            self._rec.read_grads(unwrap_model(pl_module))  # leaves only: nothing computed
            self._rec.grads.before_update = trainer.global_step == 0  # nothing has moved yet

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._rec.detach()
        if not self.disabled and not trainer.sanity_checking:
            # manual optimisation may return nothing: the loss its backward saw instead
            loss = step_loss(outputs, trainer)
            loss = loss if loss is not None else step_loss(self._backward_loss, trainer)
            # at the batch's own step, the one its logged loss has in TensorBoard (a log at
            # step L has the losses of the steps before L)
            inputs = batch_inputs(batch)  # a reference: no sync
            began = self._batch_at[1] if batch_idx == 0 else None  # an epoch's first batch
            self.diagnosis.loss.add(self._batch_at[0], loss, inputs, began)
        self._backward_loss, self._loss_read = None, False
        if self._rec.window_seconds:  # the window's share of the cost, beside the events'
            self.timings["window"] += self._rec.window_seconds
            self.budget.add(self._rec.window_seconds)
            self._rec.window_seconds = 0.0
        events = self.events
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.events > events and not self.disabled and self._rec.depth:
            # the layers' norms after this step's update, against the next batch's start:
            # what changes between them is written outside the optimiser (on the device,
            # read at the next event)
            held = held_by(trainer.optimizers, moved=True)
            self._norms_at_end = norm_tensor(unwrap_model(pl_module), self._rec.depth, held)

    def take_peak_rate(self) -> tuple[int, float] | None:
        """``(step, rate)``: the highest learning rate of a step since the last log (then cleared).

        A rate raised for a few steps between two logs is seen at neither (hunt 46: x300
        for steps 100-104, logs at 90 and 120, told as one bad batch).
        """
        peak, self._peak_rate = self._peak_rate, None
        return peak
