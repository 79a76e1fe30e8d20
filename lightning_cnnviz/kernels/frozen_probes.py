"""The frozen-layer check's probe passes: weights ``forward`` leaves unused, learners fed nothing.

``FrozenProbes`` is a part of ``FrozenCheck`` (``frozen_check.py``), run only once layers
look still: ``_unused`` leaves out the layers whose weights ``forward`` does not use (a
stateless call with other weights, a copy kept on the module), ``_discarded`` those whose
output it throws away, ``_learners_fed`` tells a
gradient cut apart from dead units that feed the layers that learn a constant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch import Tensor, nn

from lightning_cnnviz.core.layer_calls import (
    apart_from_training,
    called_alone,
    outputs_unused,
    unused_weights,
)
from lightning_cnnviz.core.own_hooks import own_hook
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.real_values import real_values
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.voice import listed

__all__ = ["FrozenProbes"]


class FrozenProbes:
    """Probe passes that read which watched layers training uses (a part of ``FrozenCheck``).

    Uses the monitor's ``selected``, ``probe_input`` and ``warn_once``.
    """

    selected: dict[str, nn.Module]
    probe_input: Callable[..., Tensor]
    warn_once: Callable[[str, str], None]

    def _discarded(self, trainer: Trainer, names: list[str]) -> list[str]:
        """Of ``names`` (given no gradient), those whose output the model's does not use, said once.

        Computed and thrown away (``layer_calls.outputs_unused``: a timm ``features_only``
        net hooked runs its later stages for nothing), they are untrained by design, not
        frozen by a set-up to fix. Probe passes on two images.
        """
        model = unwrap_model(trainer.lightning_module)
        try:
            x = self.probe_input(trainer, model)[:2]
            layers = {n: self.selected[n] for n in names}
            discarded = outputs_unused(model, layers, lambda: model(x))
        except Exception:  # no probe the forward takes: no claim
            return []
        if discarded:
            one = len(discarded) == 1
            self.warn_once(
                "discarded",
                f"`forward` computes {listed(discarded)} and throws "
                f"{'its' if one else 'their'} output away (the model's output does not change "
                f"with {'it' if one else 'them'}): no gradient reaches "
                f"{'it' if one else 'them'}, so {'it does' if one else 'they do'} not train, "
                "and the kernels are drawn but not checked for it (a timm `features_only` "
                "net with `feature_cls='hook'` runs the stages it does not return); leave them "
                "out of the model, or name the layers it uses in `layers`",
            )
        return discarded

    def _learners_fed(self, trainer: Trainer) -> bool:
        """Whether the layers that learn (a gradient other than 0) get inputs that vary.

        Silent units before them (dead ReLUs) hand them zeros, or the same value for
        every image (the biases after them: hunt 54, a layer after a dead one learnt its
        bias and fed the head a constant), and pass no gradient down, as an operation
        without one does: those are dead units, not a cut. Read here, not from the
        dead-units findings: a note of a few dead units is on most plain nets (hunt 33:
        `torch.sign` without a straight-through estimator kept its note). One probe pass.
        """
        model = unwrap_model(trainer.lightning_module)
        learners = [
            m for m in model.modules()
            if any(p.grad is not None and bool(real_values(p.grad).any())
                   for p in m.parameters(recurse=False))
        ]  # fmt: skip
        fed: list[bool] = []

        def read(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = next((a for a in args if isinstance(a, Tensor)), None)
            if x is not None:
                x = x.detach().float()
                x = x - x[:1] if x.dim() > 0 and len(x) > 1 else x  # the images' own, not one
            fed.append(x is not None and bool(x.any()))

        handles = [m.register_forward_pre_hook(own_hook(read)) for m in learners]
        try:
            with probe_mode(model), torch.no_grad():
                model(self.probe_input(trainer, model)[:8])
        except Exception:  # no probe the forward takes: no claim
            return False
        finally:
            for handle in handles:
                handle.remove()
        return any(fed)

    def _unused(self, trainer: Trainer, names: list[str]) -> list[str]:
        """Of ``names``, the layers whose weights ``forward`` does not use, said once each way.

        Called with other weights (``torch.func.functional_call`` with weights of its own:
        the registered ones stay unused, no sign of frozen training; setups hunt 23), or
        never called and apart from training (``layer_calls.apart_from_training``: a copy
        of the model kept on it; setups hunt 54, an ``AveragedModel`` told "frozen layers,
        left out of the optimiser"), nor a branch `forward` chooses by its input that some
        probe images take alone (``layer_calls.called_alone``: setups hunt 74, a conv
        trained on a third of the batches told "no part in training"). Probe passes only
        here, in eval mode, which skips a branch run in training mode only (an auxiliary head).
        """
        model = trainer.lightning_module
        try:
            x = self.probe_input(trainer, model)
            layers = {n: self.selected[n] for n in names}
            unused = unused_weights(model, layers, lambda: model(x))
            # a branch some probe images take alone is trained (setups hunt 74)
            missed = {n: layers[n] for n, why in unused.items() if why == "uncalled"}
            branch = called_alone(model, missed, x) if missed else {}
        except Exception:  # no probe the forward takes: the weights as they are
            return []
        unused = {n: why for n, why in unused.items() if n not in branch}
        swapped = [n for n, why in unused.items() if why == "swapped"]
        uncalled = [n for n, why in unused.items()
                    if why == "uncalled" and apart_from_training(model, n)]  # fmt: skip
        if swapped:
            self.warn_once(
                "swapped",
                f"`forward` calls {listed(swapped)} with other weights than "
                f"{'its' if len(swapped) == 1 else 'their'} own (`torch.func.functional_call` "
                "or another stateless call): the kernels drawn of them are the module's own "
                "weights, which forward does not use, nor train; name the layers whose weights "
                "it uses, or register the trained weights in the modules",
            )
        if uncalled:
            self.warn_once(
                "uncalled",
                f"`forward` does not call {listed(uncalled)}: they take no part in training, "
                "so their kernels are drawn but not checked for it (a copy kept on the module, "
                "as an `AveragedModel` or an EMA, is updated apart from the optimiser); name "
                "the layers `forward` uses in `layers` to leave them out",
            )
        return swapped + uncalled
