"""Whether validation runs the model that trains: a part of ``OverfittingMonitor``.

The logged val metrics are the model's only where ``validation_step`` calls it. Two ways
they are another module's, validated on purpose: Lightning's weight-averaging callbacks
(``WeightAveraging``, ``EMAWeightAveraging``) swap an average of the weights into the
model for validation, and a module may validate a copy of its own (timm's ``ModelEmaV3``,
``AveragedModel``, a teacher). The first is read from the trainer's callbacks; the second
from the validation's first batch, none of whose calls reaches a layer the optimiser
trains (the copy's layers take no gradient). ``Evaluation.val_elsewhere`` says either.
Held out (hunt 80): a two-stem net whose first registered conv serves a training-only
auxiliary head was taken for one validating a copy, its real ``loss_mismatch`` held back:
every trained layer is read, not the first.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch import nn

from lightning_cnnviz.core.capture import tap_forward
from lightning_cnnviz.core.selection import unwrap_model

__all__ = ["ValReach", "averaged_in", "trained_layers"]


def averaged_in(trainer: Trainer) -> bool:
    """Whether a Lightning callback swaps an average of the weights in for validation."""
    try:
        from lightning.pytorch.callbacks import WeightAveraging
    except ImportError:  # Lightning before 2.5
        return False
    return any(isinstance(cb, WeightAveraging) for cb in trainer.callbacks)  # type: ignore[attr-defined]


def trained_layers(model: nn.Module) -> list[nn.Module]:
    """The modules holding a parameter of their own that takes a gradient.

    Example::

        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1).requires_grad_(False))
        >>> trained_layers(net) == [net[0]]
        True
    """
    return [
        m for m in model.modules()
        if any(p is not None and p.requires_grad for p in m._parameters.values())
    ]  # fmt: skip


class ValReach:
    """Taps the trained layers for a validation's first batch (a part of the monitor).

    ``val_reached``: whether a call of that batch reached one (``None``: not read yet).
    """

    val_reached: bool | None
    _reach_taps: list[Any]

    def _tap_reach(self, trainer: Trainer, pl_module: LightningModule, batch_idx: int) -> None:
        """At a fit's validation's first batch: tap every trained layer until its end."""
        self._untap_reach()
        if batch_idx != 0 or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self.val_reached = False

        def reached(_args: tuple[Any, ...], _output: Any) -> None:
            self.val_reached = True

        layers = trained_layers(unwrap_model(pl_module))
        self._reach_taps = [tap_forward(m, reached) for m in layers]
        if not layers:
            self.val_reached = None  # nothing trains: nothing to tell apart

    def _untap_reach(self) -> None:
        for handle in getattr(self, "_reach_taps", ()):
            handle.remove()
        self._reach_taps = []

    def _remove_tap(self) -> None:
        """The reach taps removed with the steps' tap (``step_inputs.StepInputs``)."""
        self._untap_reach()
        super()._remove_tap()  # type: ignore[misc]
