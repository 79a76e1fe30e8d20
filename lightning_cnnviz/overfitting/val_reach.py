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
every trained layer is read, not the first. Not read inside a compiled graph (TorchScript,
``torch.compile``: no hook fires there), nor where the taps saw no call of the fit's first
training batch.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from lightning_cnnviz.core.capture import tap_forward
from lightning_cnnviz.core.selection import is_compiled, unwrap_model

__all__ = ["ValReach", "averaged_in", "tappable", "trained_layers"]


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


def tappable(model: nn.Module) -> bool:
    """Whether forward hooks on ``model``'s layers see their calls (not inside a compiled graph).

    Example::

        >>> tappable(nn.Linear(2, 2)), tappable(torch.jit.script(nn.Linear(2, 2)))
        (True, False)
    """
    return not any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()) and not any(
        is_compiled(m) for m in model.modules()
    )


class ValReach:
    """Taps the trained layers for a batch (a part of the monitor).

    At the fit's first training batch, whether the taps see the model's calls at all
    (``reach_seen``: a net calling its weights through ``F.conv2d`` on a ``ParameterList``
    runs no layer's forward, hunt 81); at each validation's first batch, whether a call
    reached one (``val_reached``; ``None``: not read, or the taps cannot tell).
    ``reach_seen`` is ``None`` until the first training batch, then read for the fit.
    """

    val_reached: bool | None
    reach_seen: bool | None
    _reach_taps: list[Any]

    def _tap_reach(self, trainer: Trainer, pl_module: LightningModule, split: str) -> None:
        """Tap every trained layer until the batch's end, where that batch tells something."""
        self._untap_reach()
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if split == "train" and getattr(self, "reach_seen", None) is not None:
            return  # read once per fit: nothing on later training batches
        model = unwrap_model(pl_module)
        layers = trained_layers(model) if tappable(model) else []
        if not layers or (split == "val" and not getattr(self, "reach_seen", None)):
            # nothing trains, a compiled graph, or the taps saw no training call: they
            # cannot tell (``reach_seen`` False: read, so no training batch looks again)
            self.reach_seen = bool(getattr(self, "reach_seen", None)) and bool(layers)
            self.val_reached = None
            return
        attribute = "reach_seen" if split == "train" else "val_reached"
        setattr(self, attribute, False)

        def reached(_args: tuple[Any, ...], _output: Any) -> None:
            setattr(self, attribute, True)

        self._reach_taps = [tap_forward(m, reached) for m in layers]

    def _untap_reach(self) -> None:
        for handle in getattr(self, "_reach_taps", ()):
            handle.remove()
        self._reach_taps = []

    def _remove_tap(self) -> None:
        """The reach taps removed with the steps' tap (``step_inputs.StepInputs``)."""
        self._untap_reach()
        super()._remove_tap()  # type: ignore[misc]
