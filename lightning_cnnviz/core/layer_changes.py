"""A model changed mid-fit: the monitor's layers found anew, or the monitor steps aside.

``LayerChanges`` is a part of ``Monitor`` (a mixin). At each event, before the monitor
reads anything: a watched module replaced by another object (re-initialised, wrapped,
renamed: ``monitor_layers.replaced``), or, where ``layers="auto"``, any module added or
removed since the layers were found (a block appended, a head swapped for one of other
width) makes it find its layers anew and say so once. Layers named in ``layers`` that
select nothing any more are the surgery's doing, not a setting to fix: the monitor goes
on with the patterns that still select layers (``layers_now``) and says which it lost,
or, where none does, steps aside saying why (setups hunt 68: the fit stopped with
``LayerNotFoundError``; setups hunt 70: one named layer of two gone stepped it aside).

It reads the monitor's ``selected``, ``disabled`` and ``layers``, and uses its
``_find_layers``, ``watched_modules``, ``step_aside`` and ``warn_once``.

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3))
    >>> before = module_ids(net)
    >>> net.append(nn.Conv2d(2, 2, 3)) is net, module_ids(net) == before
    (True, False)
"""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from torch import nn

from lightning_cnnviz.core.hook_guard import ConfigError
from lightning_cnnviz.core.monitor_layers import replaced
from lightning_cnnviz.core.selection import LayerSpec, unwrap_model
from lightning_cnnviz.core.voice import listed

__all__ = ["LayerChanges", "module_ids"]


def module_ids(pl_module: nn.Module) -> tuple[int, ...]:
    """The identity of every module of the (unwrapped) model, in order."""
    return tuple(id(m) for m in unwrap_model(pl_module).modules())


class LayerChanges:
    """Layers found anew where the model changed since (see the module docstring)."""

    selected: dict[str, nn.Module]
    disabled: bool
    layers: LayerSpec
    _layers_logged: bool
    _modules_then: tuple[int, ...]  # ``module_ids`` when the layers were found
    _patterns_lost: frozenset[str] = frozenset()  # named patterns the model's changes emptied

    def layers_now(self) -> LayerSpec:
        """``layers``, less the patterns that model changes in this fit left selecting nothing."""
        if isinstance(self.layers, str) or not self._patterns_lost:
            return self.layers
        return [p for p in self.layers if p not in self._patterns_lost]

    def follow_changes(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        """Find the layers anew where the model changed; False where the monitor stepped aside."""
        if not self.selected or self.disabled:
            return not self.disabled
        gone = replaced(pl_module, self.watched_modules())
        auto = self.layers == "auto" or list(self.layers) == ["auto"]
        grown = not gone and auto and module_ids(pl_module) != self._modules_then
        if not (gone or grown):
            return True
        step = trainer.global_step
        try:
            self._find_layers(trainer, pl_module)
        except ConfigError as err:  # `layers` valid at fit start: the surgery's, not the user's
            now = self.layers_now()  # which named patterns it can no longer watch, if some
            lost = [] if isinstance(now, str) else self._failing_alone(trainer, pl_module, now)
            if not lost or lost == now:
                self.step_aside(f"{listed(gone)} replaced by step {step}, and then: {err}")
                return False
            self._patterns_lost |= set(lost)
            return self._go_on_without(trainer, pl_module, lost, step)
        now = listed(list(self.selected)) if self.selected else "none"
        if gone:  # a layer re-made (re-initialised, network surgery): the old one is called
            # no more, and was told "frozen" with a `.detach()` to remove
            self.warn_once(
                f"replaced:{','.join(gone)}",
                f"{listed(gone)} replaced or removed since the layers were found: from step "
                f"{step} it watches {now}",
            )
        else:  # each change said (setups hunt 70: a second one went unsaid)
            self.warn_once(
                f"modules_changed:{step}",
                f"the model's modules changed by step {step} (a layer added, removed or "
                f"wrapped, a parametrization registered): it now watches {now}",
            )
        self._layers_logged = False  # call sites found again, the selection written anew
        return not self.disabled

    def _failing_alone(
        self, trainer: Trainer, pl_module: LightningModule, patterns: list[str]
    ) -> list[str]:
        """The patterns whose layers alone the monitor cannot watch now.

        Gone, renamed, or another type (setups hunt 72: a conv wrapped in a `Sequential`
        stepped KernelMonitor aside from its other named layer).
        """
        kept, failing = self._patterns_lost, []
        for pattern in patterns:
            self._patterns_lost = kept | {p for p in patterns if p != pattern}
            try:
                self._find_layers(trainer, pl_module)
            except ConfigError:
                failing.append(pattern)
            finally:
                self._patterns_lost = kept
        return failing

    def _go_on_without(
        self, trainer: Trainer, pl_module: LightningModule, lost: list[str], step: int
    ) -> bool:
        """Find the layers the other patterns select, saying which were lost."""
        try:
            self._find_layers(trainer, pl_module)
        except ConfigError as err:
            self.step_aside(f"{listed(lost)} gone by step {step}, and then: {err}")
            return False
        self.warn_once(
            f"lost:{','.join(lost)}",
            f"`layers` {listed(lost)} no longer {'selects' if len(lost) == 1 else 'select'} "
            f"a module it can watch by step {step} (a layer removed, renamed, replaced or "
            f"wrapped): it watches {listed(list(self.selected))} from there",
        )
        self._layers_logged = False
        return not self.disabled

    def remember_modules(self, pl_module: nn.Module) -> None:
        """Keep ``module_ids`` as the layers are found."""
        self._modules_then = module_ids(pl_module)

    def _find_layers(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise NotImplementedError  # the monitor's
