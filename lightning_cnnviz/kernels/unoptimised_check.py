"""Parameters no optimiser holds, told once, and told again once one holds them.

``UnoptimisedCheck`` is a part of ``FrozenCheck`` (``frozen_check.py``): at an event it
tells, as a ``not_optimised`` note, the parameters outside the watched layers that a
backward reaches and no optimiser's parameter group holds (``frozen.unoptimised``); once
every one of them is held (a group added during the run, ``optimizer.add_param_group``),
the note says so instead of "they never change" (setups hunt 57: it stayed in the
summary while the head trained from epoch 1).
"""

from __future__ import annotations

from lightning.pytorch import Trainer
from torch import nn

from lightning_cnnviz.core.findings import Finding, findings_of, replace, report
from lightning_cnnviz.core.weight_leaves import held_by
from lightning_cnnviz.kernels.frozen import param_groups, unoptimised
from lightning_cnnviz.kernels.frozen_words import held_text, unoptimised_text

__all__ = ["UnoptimisedCheck"]


class UnoptimisedCheck:
    """Parameters no optimiser holds (a part of ``FrozenCheck``).

    Uses the monitor's ``selected`` and ``section``; keeps ``_unoptimised_told`` (saved in
    checkpoints by the monitor) and the note told in this fit.
    """

    selected: dict[str, nn.Module]
    section: str
    _unoptimised_told: bool
    _unoptimised: Finding | None = None

    def _check_unoptimised(self, trainer: Trainer) -> None:
        """Tell once (a note) of parameters outside the watched layers no optimiser holds."""
        module = trainer.lightning_module
        if module is None:
            return
        watched = {id(p) for m in self.selected.values() for p in m.parameters(recurse=False)}
        groups = param_groups(trainer.optimizers, module.parameters())
        named = [(n, p) for n, p in module.named_parameters() if id(p) not in watched]
        names = unoptimised(named, groups)
        if not names:
            return
        self._unoptimised_told = True
        text = unoptimised_text(names, trainer.global_step, trainer.current_epoch)
        numbers = {"parameters": len(names), "names": names}
        finding = Finding(
            self.section, "not_optimised", trainer.global_step, trainer.current_epoch, text,
            numbers, "note",
        )  # fmt: skip
        self._unoptimised = finding
        report(trainer, finding)

    def _check_held(self, trainer: Trainer) -> None:
        """The note told in this fit, rewritten once an optimiser holds all its parameters."""
        told, module = self._unoptimised, trainer.lightning_module
        if told is None or module is None or not any(f is told for f in findings_of(trainer)):
            return
        groups = param_groups(trainer.optimizers, module.parameters())
        if groups is None:
            return
        held = held_by(groups=groups)
        params = dict(module.named_parameters())
        names = told.figures["names"]
        if not all(n in params and id(params[n]) in held for n in names):
            return
        self._unoptimised = None
        step, epoch = trainer.global_step, trainer.current_epoch
        figures = {**told.figures, "held_since": step}
        text = held_text(names, told.step, step, epoch)
        replace(trainer, told, Finding(self.section, "not_optimised", step, epoch, text, figures,
                                       "note"))  # fmt: skip
