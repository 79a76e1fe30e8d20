"""The frozen-layer checks of ``KernelMonitor``: layers that stopped changing, parameters left out.

``FrozenCheck`` is a part of ``KernelMonitor`` (a mixin, as the monitors' parts are): at
each event it tells once, as findings, the watched layers whose weights stopped changing
(``frozen_layers``: why, from the weights and the optimisers, and a problem where they
hold their random initialisation) and the parameters outside them that get a gradient and
that no optimiser holds (``not_optimised``, ``unoptimised_check.py``). The pure rules are
in ``frozen.py``, their words in ``frozen_words.py``. What it keeps across events
(``_still``, ``_steps``, the told flags) is saved in checkpoints by the monitor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import Trainer
from torch import Tensor, nn

from lightning_cnnviz.core.findings import Finding, findings_of, replace, report
from lightning_cnnviz.core.gradient_hooks import global_backward_hooked, gradient_hooked
from lightning_cnnviz.core.say import say
from lightning_cnnviz.core.weight_leaves import weight_param
from lightning_cnnviz.kernels.frozen import (
    SCALE_GAVE_UP,
    SET_UP,
    STILL_EVENTS,
    events_needed,
    gradient_state,
    loss_scale,
    param_groups,
    still_layers,
    still_reason,
    tiny_rate,
    unoptimised,
)
from lightning_cnnviz.kernels.frozen_probes import FrozenProbes
from lightning_cnnviz.kernels.frozen_words import frozen_text, moving_text
from lightning_cnnviz.kernels.unoptimised_check import UnoptimisedCheck
from lightning_cnnviz.kernels.untrained import untrained_look

__all__ = ["ZERO_STEPS", "FrozenCheck"]

ZERO_STEPS = 8  # optimizer steps in a row with every gradient 0 that make learning stop


class FrozenCheck(FrozenProbes, UnoptimisedCheck):
    """Layers that stopped changing and parameters no optimiser holds (a part of ``KernelMonitor``).

    Uses the monitor's ``selected``, ``section``, ``tag``, ``probe_input`` and ``warn_once``.
    """

    selected: dict[str, nn.Module]
    section: str
    _still: dict[str, int]
    _moving_run: dict[str, int]  # events in a row with a change, per layer
    _trained: set[str]  # layers that changed at two events in a row, at any time
    _steps: list[int]
    _scale: float | None  # the 16-bit loss scale at the last event
    _frozen_told: bool
    _frozen: Finding | None
    _zero_events: int  # events in a row whose last steps' gradients were all 0
    _rates_set: dict[int, float]  # each parameter group's rate when the fit started, by id
    zero_run: int  # ``StepGradients``': steps in a row read with every gradient 0
    take_step_reads: Callable[[], str | None]  # ``StepGradients``'
    fed_after_backward: set[str]  # ``StepGradients``': layers with a gradient after it
    tag: Callable[..., str]  # the monitor's
    probe_input: Callable[..., Tensor]
    warn_once: Callable[[str, str], None]

    def on_fit_start(self, trainer: Trainer, pl_module: Any) -> None:
        """Keep the rates set: what a scheduler recording no ``initial_lr`` cuts them from.

        (Setups hunt 81: ``ReduceLROnPlateau`` at 1e-5x its start was "no gradient reaches them".)
        """
        self._rates_set = {
            id(g): float(g["lr"])
            for opt in trainer.optimizers
            for g in opt.param_groups
            if isinstance(g.get("lr"), (int, float))
        }
        super().on_fit_start(trainer, pl_module)  # type: ignore[misc]

    def _check_frozen(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        """Tell once (a note) of the layers whose weights stopped changing (``frozen.py``)."""
        if not self._unoptimised_told:
            self._check_unoptimised(trainer)
        self._check_held(trainer)
        self._steps = [*self._steps, trainer.global_step][-(STILL_EVENTS + 1) :]
        changes = {n: scalars[t] for n in self.selected
                   if (t := self.tag(n, "relative_change")) in scalars}  # fmt: skip
        scale = loss_scale(getattr(trainer.strategy, "precision_plugin", None))
        if scale is not None and self._scale is not None and SCALE_GAVE_UP <= scale < self._scale:
            # the loss scaler skipped steps since the last event (overflowing float16 as it
            # searches for its scale): weights it left as they were are not frozen layers
            changes = {n: c for n, c in changes.items() if c != 0.0}
        self._scale = scale
        # steps given no gradient learn nothing, whatever still moves the weights: the
        # optimiser's momentum, weight decay (hunt 41: hooks zeroing every gradient from
        # epoch 3 under Adam drifted the weights on, val 93% -> 79%, told "updates too large")
        given = self.take_step_reads()
        drifting = given == "zero" and any(c > 0 for c in changes.values())
        # a second event confirms only a span of ZERO_STEPS steps at 0: batches without a
        # labelled item may come in blocks (hunt 44: 4 of every 8 steps, loss 0) and learn
        held = self._zero_events > 0 and self.zero_run < ZERO_STEPS
        self._zero_events = self._zero_events + 1 if given == "zero" else 0
        if given == "none" or (given == "zero" and not held):
            changes = dict.fromkeys(changes, 0.0)
        # no gradient at the steps, and one after them: the step runs before the backward
        # (hunt 43: `zero_grad(); step(); manual_backward(loss)`, told as vanishing)
        ungraded, zeroed = given == "none", given == "zero"
        # the leaves the optimiser holds: a parametrized weight is computed on access (hunt
        # 46: spectral-norm convs whose hooks zeroed every gradient told "left out of the
        # optimiser's parameter groups")
        leaves = {n: weight_param(m) for n, m in self.selected.items()}
        leaves = {n: w for n, w in leaves.items() if w is not None}
        module = trainer.lightning_module
        groups = None if module is None else param_groups(trainer.optimizers, module.parameters())
        # known not to train: no gradient asked for, or no optimiser holding the weight
        # (hunt 58: told a log after the same layers with `requires_grad=False`)
        fixed = {n for n, w in leaves.items() if not w.requires_grad}
        fixed |= set(unoptimised(leaves.items(), groups))
        nearly = {n for n, w in leaves.items() if tiny_rate(w, groups)}
        reached = still_layers(self._still, changes, fixed, nearly)
        self._check_moving(trainer, changes, fixed)
        if not reached or self._frozen_told:
            return
        self._frozen_told = True
        names = [n for n in leaves if self._still.get(n, 0) >= events_needed(n, fixed)]
        names = [n for n in names if n not in self._unused(trainer, names)]
        if not names:
            return
        # what the steps got, where read: at an epoch's end Lightning has set every `.grad`
        # to None (setups hunt 44: hooks zeroing them told as a loss cut from the model)
        kept_grads = zeroed or any(
            p.grad is not None for p in trainer.lightning_module.parameters()
        )
        reasons = {n: still_reason(leaves[n], groups, kept_grads, self._rates_set) for n in names}
        ungiven = [n for n in names if reasons[n] in ("detached", "no_gradient")]
        discarded = self._discarded(trainer, ungiven) if ungiven else []
        names = [n for n in names if n not in discarded]
        if not names:
            return
        reasons = {n: reasons[n] for n in names}
        order = list(self.selected)
        for n in names:  # a hook on its weights, and a layer before it still learns (the
            # gradient passes through it): not dead units after it, which a skip can bypass
            if (
                reasons[n] == "no_gradient"
                and gradient_hooked(self.selected[n])
                and any(changes.get(m, 0.0) > 0 for m in order[: order.index(n)])
            ):
                reasons[n] = "own_gradient_removed"
        blocked = set(reasons.values()) <= {"no_gradient", "detached"}
        whole = len(names) == len(self.selected) and blocked
        state = gradient_state(trainer.lightning_module.parameters()) if whole else "some"
        state = "zero" if whole and zeroed else state
        if state == "nonfinite":  # every step skipped (a loss scaler), or left unapplied
            reasons = dict.fromkeys(names, "nonfinite_gradient")
        elif whole and ungraded:
            reasons = dict.fromkeys(names, "nothing_learns")
        elif state != "some":
            # the whole model: the step; gradients there and all 0 are a constant loss
            why = "zero_gradient" if kept_grads else "nothing_learns"
            why = "loss_at_zero" if why == "zero_gradient" and self.loss_at_zero() else why
            hooked = global_backward_hooked() or any(map(gradient_hooked, module.modules()))
            why = "hooks_zeroed" if why == "zero_gradient" and hooked else why
            # a gradient after the backward, 0 at the step: zeroed between them, not a
            # constant loss (hunt 92: a callback zeroing every gradient in
            # `on_before_optimizer_step`, told "the loss does not change with the weights")
            fed = why == "zero_gradient" and set(names) <= self.fed_after_backward
            reasons = dict.fromkeys(names, "zeroed_after_backward" if fed else why)
        elif (
            whole
            and set(reasons.values()) == {"no_gradient"}
            and gradient_state(leaves[n] for n in names) == "zero"
            and self._learners_fed(trainer)
        ):
            # every watched layer gets exactly 0 (not a vanishing trickle) while parameters
            # after them learn: the gradient is cut on its way down (hunt 31: activations
            # rounded without a straight-through estimator, told as vanishing, a note);
            # where each carries a gradient hook, the hooks (hunt 41: `g * 0` on every
            # parameter but the head's, told as `torch.round`)
            hooked = all(gradient_hooked(self.selected[n]) for n in names)
            why = "own_gradient_removed" if hooked else "gradient_blocked"
            # a gradient after the backward, 0 after the step: zeroed between them (hunt
            # 42: a callback's `on_before_optimizer_step`, told as `torch.round`)
            why = "zeroed_after_backward" if set(names) <= self.fed_after_backward else why
            reasons = dict.fromkeys(names, why)
        step, epoch, watched = trainer.global_step, trainer.current_epoch, len(self.selected)
        span = min(max(self._still[n] for n in names), STILL_EVENTS)
        # a random init kept by the set-up: frozen random features (dead units after a
        # layer also keep it as initialised, and are the thing to fix); not layers seen
        # training before (hunt 89: a timm resnet10t frozen after 150 steps of training,
        # its 3x3 kernels still uncorrelated, was told "look untrained", a problem)
        kept = [leaves[n] for n in names if reasons[n] in SET_UP and n not in self._trained]
        untrained = untrained_look(kept) if kept else None
        since = self._steps[-min(span + 1, len(self._steps))]
        text = frozen_text(names, reasons, watched, since, step, epoch, untrained, scale,
                           drifting)  # fmt: skip
        no_grad = [n for n in names if reasons[n] == "no_grad"]
        numbers = {"layers": len(names), "watched": watched, "no_grad": len(no_grad)}
        if untrained is not None:  # frozen random features: a problem
            numbers["neighbour_r"] = untrained
            say(text)
        nothing = set(reasons.values()) in ({"nothing_learns"}, {"zero_gradient"}, {"loss_at_zero"},
                                            {"hooks_zeroed"}, {"nonfinite_gradient"},
                                            {"gradient_blocked"},
                                            {"zeroed_after_backward"})  # fmt: skip
        if nothing and untrained is None:
            say(text)
        severity = "note" if untrained is None and not nothing else "problem"
        numbers["names"] = names
        finding = Finding(self.section, "frozen_layers", step, epoch, text, numbers, severity)
        report(trainer, finding)
        self._frozen = finding

    def _check_moving(self, trainer: Trainer, changes: dict[str, float], fixed: set[str]) -> None:
        """The told layers changing again (unfrozen by a schedule): the finding becomes a note.

        Held out: ``BackboneFinetuning`` froze the convolutions for an epoch, then trained
        them (relative change 0.02-0.03 an event), and the summary kept the problem. Layers
        still ``fixed`` (no gradient, or no optimiser) must change at two events in a row:
        a frozen backbone written once in place (setups hunt 57: a BatchNorm folded into
        it) does not train.
        """
        for n in changes:
            moved = self._still.get(n, 0) == 0
            self._moving_run[n] = self._moving_run.get(n, 0) + 1 if moved else 0
            if self._moving_run[n] >= 2:
                self._trained.add(n)
        told = self._frozen
        if told is None or not any(f is told for f in findings_of(trainer)):
            return  # nothing told, or told in another fit
        names = told.figures["names"]
        if not all(self._still.get(n, 0) == 0 and n in changes for n in names):
            return
        if any(n in fixed and self._moving_run.get(n, 0) < 2 for n in names):
            return
        self._frozen = None
        step, epoch = trainer.global_step, trainer.current_epoch
        text = moving_text(names, told.step, step, epoch)
        figures = {**told.figures, "moving_since": step}
        replace(trainer, told, Finding(self.section, "frozen_layers", step, epoch, text, figures,
                                       "note"))  # fmt: skip
