"""What the gradients of the last steps before an event held, read at the steps themselves.

``StepGradients`` is a part of ``KernelMonitor`` (a mixin, as the monitors' parts are):
at each of the ``STEP_READS`` optimizer steps before an event it reads whether every
gradient the step gets is exactly 0, or absent (one host read a step, at those steps
only, and at every step up to the next event after steps all at 0); ``take_step_reads``
hands the frozen-layer check what all of them held. Read at the step, not at the event:
after a step a run may zero its gradients and still learn (``zero_grad(set_to_none=
False)``), and by an epoch's end Lightning has set them to None.

Example::

    >>> reads = StepGradients()
    >>> reads._step_grads = ["zero", "zero"]
    >>> reads.take_step_reads(), reads.take_step_reads()
    ('zero', None)
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Trainer
from torch import Tensor, nn

from lightning_cnnviz.core.schedule import Schedule, batches_to_log
from lightning_cnnviz.core.step_loss import step_loss
from lightning_cnnviz.core.weight_leaves import weight_param
from lightning_cnnviz.kernels.frozen import gradient_state

__all__ = ["STEP_READS", "StepGradients"]

# the steps before an event whose gradients are read: two, not one (every other batch
# unlabelled, its loss 0, is a healthy semi-supervised run: hunt 43, the events fell on
# those batches)
STEP_READS = 2


class StepGradients:
    """Reads the gradients of an event's last steps (a part of ``KernelMonitor``).

    Uses the monitor's ``schedule``, ``selected`` and ``disabled``.
    """

    selected: dict[str, nn.Module]
    schedule: Schedule
    disabled: bool
    _step_grads: list[str]  # ``gradient_state`` of the steps read since the last event
    _grads_due: bool  # for an epoch schedule: this batch's steps are among them
    _suspect: bool  # the last event's steps were all 0: every step is read until the next
    zero_run: int  # optimizer steps in a row read with every gradient 0
    fed_after_backward: set[str]  # watched layers whose weights held a gradient after it
    _losses: tuple[Tensor, Tensor] | None  # the loss returned at the fit's first step, the last

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Keep the loss returned (no host read): the first and the latest."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # type: ignore[misc]
        loss = step_loss(outputs, trainer)
        if loss is not None:
            loss = loss.detach()
            self._losses = (loss if self._losses is None else self._losses[0], loss)

    def loss_at_zero(self) -> bool:
        """Whether the loss returned is exactly 0 now, after one above 0 (one host read).

        A margin or hinge loss every sample meets (setups hunt 76: a triplet loss 0.603,
        0.149, then 0.0 at every step, told as a constant loss) gives every gradient 0, as
        a loss multiplied by 0 from some step on does.
        """
        if self._losses is None:
            return False
        first, last = torch.stack([t.float().reshape(()) for t in self._losses]).cpu().tolist()
        return last == 0.0 and first > 0.0

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        """For an epoch schedule: whether this batch's steps are among an event's last ones."""
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)  # type: ignore[misc]
        self._grads_due = False
        if self.disabled or not self.selected or self.schedule.every_n_epochs is None:
            return
        ahead = batches_to_log(
            trainer.global_step, batch_idx, trainer.accumulate_grad_batches,
            trainer.num_training_batches, None,
            self.schedule.due_after_epoch(trainer.current_epoch),
        )  # fmt: skip
        accumulate = trainer.accumulate_grad_batches
        self._grads_due = ahead is not None and ahead[0] <= STEP_READS * accumulate

    def _due(self, trainer: Trainer) -> bool:
        """Whether the step under way is one of the last ``STEP_READS`` before an event."""
        ahead = self.schedule.next_step(trainer.global_step)
        due = self._grads_due if ahead is None else ahead - trainer.global_step <= STEP_READS
        return due or self._suspect

    def on_after_backward(self, trainer: Trainer, pl_module: Any) -> None:
        """Note the watched layers whose weights hold a gradient after the backward.

        At those steps only (one host read): where it is 0 after the step, something in
        between set it so.
        """
        super().on_after_backward(trainer, pl_module)  # type: ignore[misc]
        if self.disabled or not self.selected or not self._due(trainer):
            return
        # the leaf behind `.weight`: a parametrized one is computed on access, which moves
        # its buffers or draws random numbers (a spectral norm, a DropConnect)
        leaves = {n: weight_param(m) for n, m in self.selected.items()}
        names = [n for n, w in leaves.items() if w is not None and w.grad is not None]
        if not names:
            self.fed_after_backward = set()
            return
        grads = [leaves[n].grad.detach().abs().amax().float() for n in names]  # type: ignore[union-attr]
        device = grads[0].device
        held = torch.stack([g.to(device) for g in grads]).cpu().tolist()
        self.fed_after_backward = {n for n, g in zip(names, held, strict=True) if g > 0}

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: Any, optimizer: Any) -> None:
        """Read what the gradients of the last steps before an event hold (one host read).

        At the step itself: after it, a run may zero them (``zero_grad(set_to_none=False)``)
        while it learns; before it, a callback may (``on_before_optimizer_step``). Counted
        in steps, not batches: manual optimisation steps several optimisers a batch (setups
        hunt 43: two of them, the read never ran).
        """
        super().on_before_optimizer_step(trainer, pl_module, optimizer)  # type: ignore[misc]
        if self.disabled or not self.selected:
            return
        if self._due(trainer):
            stepped = (p for g in optimizer.param_groups for p in g["params"])
            state = gradient_state(stepped)
            self._step_grads = [*self._step_grads, state]
            self.zero_run = self.zero_run + 1 if state == "zero" else 0

    def take_step_reads(self) -> str | None:
        """``"zero"`` or ``"none"`` where every step read since the last call held that.

        ``None`` where some held a gradient, or fewer than ``STEP_READS`` were read. After
        steps all at 0, every step up to the next event is read: a run whose batches without
        a labelled item come in blocks (hunt 44: 4 of every 8 steps, loss 0) had two events
        in a row fall on them, and learns.
        """
        reads, self._step_grads = self._step_grads, []
        held = set(reads)
        if len(reads) < STEP_READS or len(held) != 1 or held <= {"some", "nonfinite"}:
            self._suspect = False
            return None
        self._suspect = held == {"zero"}
        return held.pop()
