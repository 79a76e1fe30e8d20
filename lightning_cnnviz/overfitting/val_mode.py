"""Validation run in training mode: ``model.train()`` left in validation code.

Nothing here knows about Lightning. Lightning puts the model in eval mode for validation;
a ``self.model.train()`` in ``validation_step`` (or a hook) switches it back. Dropout then
drops units and BatchNorm normalises with each val batch's own statistics (and moves
its running statistics towards the val set): the logged val metrics are train-mode
figures. Held out: a BatchNorm CNN with dropout 0.7 logged 86.8-88.3% val accuracy
against 95.4% in eval mode, which a probe read from the validation loop took for eval
mode and told as a BatchNorm train/eval mismatch; without BatchNorm, 86.2% against
93.4% and nothing said. ``train_mode_layers`` reads the modes after a validation step.

Functional dropout has no mode to read: ``F.dropout(x, p)`` keeps its ``training=True``
default in eval mode. Two eval-mode passes over the same images then disagree
(``repeat_spread``); held out, a CNN with it logged 93.2-93.9% val accuracy against
95.9-96.1% with the dropout off, and nothing was said.

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2)).eval()
    >>> train_mode_layers(net)
    []
    >>> _ = net[1].train()
    >>> train_mode_layers(net)
    [('1', 'Dropout')]
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from lightning_cnnviz.core.voice import listed

__all__ = [
    "REPEAT_SPREAD",
    "deliberate",
    "random_in_eval",
    "repeat_spread",
    "stochastic_text",
    "train_mode_layers",
    "train_mode_text",
]


def train_mode_layers(module: nn.Module) -> list[tuple[str, str]]:
    """``(name, type)`` of the dropout and BatchNorm layers of ``module`` in training mode."""
    return [
        (name, type(m).__name__)
        for name, m in module.named_modules()
        if m.training and isinstance(m, _DropoutNd | _BatchNorm)
    ]


def deliberate(module: nn.Module, layers: Sequence[tuple[str, str]]) -> bool:
    """Only dropout layers switched on, their parents in eval mode: Monte Carlo dropout.

    ``model.train()`` switches every submodule, the layers' parents too; switching the
    dropout layers alone is a choice (sampling predictions with dropout on).

    Example::

        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).eval()
        >>> _ = net[1].train()
        >>> deliberate(net, train_mode_layers(net)), deliberate(net.train(), [("1", "Dropout")])
        (True, False)
    """
    modules = dict(module.named_modules())
    return all(
        "Dropout" in kind and not modules[name.rpartition(".")[0]].training for name, kind in layers
    )


def train_mode_text(layers: Sequence[tuple[str, str]], step: int, chosen: bool = False) -> str:
    """The ``train_mode_in_validation`` finding in words (``chosen``: ``deliberate``, a note).

    Example::

        >>> train_mode_text([("model.3", "Dropout")], 32)[:73]
        'Validation runs the model in training mode (seen at step 32): `model.3` ('
    """
    names = listed([f"`{name}` ({kind})" for name, kind in layers], quote=False)
    if chosen:
        return (
            f"Dropout runs at validation (seen at step {step}): {names} "
            f"{'is' if len(layers) == 1 else 'are'} in training mode while the rest of the "
            "model is in eval mode (Monte Carlo dropout?). The logged val metrics are then "
            "those of dropped-out models, below the model's own."
        )
    effects = []
    if any("Dropout" in kind for _, kind in layers):
        effects.append("dropout drops units")
    if any("Norm" in kind for _, kind in layers):
        effects.append(
            "BatchNorm normalises with each val batch's statistics and moves its running "
            "statistics towards the val set"
        )
    return (
        f"Validation runs the model in training mode (seen at step {step}): {names} "
        f"{'was' if len(layers) == 1 else 'were'} in training mode after a validation step, "
        "where Lightning had put the model in "
        f"eval mode. A `.train()` call in `validation_step` or a validation hook? Then "
        f"{' and '.join(effects)}: the logged val metrics are train-mode figures, not the "
        "model's. Try: remove the `.train()` call from validation code (Lightning switches "
        "to eval mode for validation and back to training mode after it)."
    )


REPEAT_SPREAD = 1e-3
"""Two eval-mode passes over the same images whose logits differ by this share of their
largest: something random runs in ``forward`` outside the modules' training flags."""


def repeat_spread(first: Tensor, second: Tensor) -> float:
    """The largest difference of two passes' logits, as a share of the largest logit.

    Over the entries finite in both (NaN where none is: a diverged model compares as
    nothing, never as random).

    Example::

        >>> import torch
        >>> a = torch.tensor([[2.0, -1.0]])
        >>> repeat_spread(a, a), repeat_spread(a, torch.tensor([[1.0, -1.0]]))
        (0.0, 0.5)
        >>> repeat_spread(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[float("nan"), 1.0]]))
        0.0
    """
    finite = first.isfinite() & second.isfinite()
    if not bool(finite.any()):
        return float("nan")
    first, second = first[finite], second[finite]
    scale = float(first.abs().max().clamp_min(1e-12))
    return float((first - second).abs().max()) / scale


_RANDOM_IN_EVAL = (nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)


def random_in_eval(module: nn.Module) -> list[tuple[str, str]]:
    """``(name, type)`` of built-in modules random in eval mode by design.

    Fractional max-pooling draws its pooling regions on every call unless it is given
    ``_random_samples`` (its paper averages several passes at test time). Held out (hunt
    26): a net with two of them was told "random in eval mode" with dropout and noise in
    ``forward`` as the causes, which it had none of.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.FractionalMaxPool2d(2, output_ratio=0.7))
        >>> random_in_eval(net)
        [('1', 'FractionalMaxPool2d')]
    """
    return [
        (name, type(m).__name__)
        for name, m in module.named_modules()
        if isinstance(m, _RANDOM_IN_EVAL) and getattr(m, "_random_samples", None) is None
    ]


def stochastic_text(spread: float, step: int, built_in: Sequence[tuple[str, str]] = ()) -> str:
    """The ``train_mode_in_validation`` finding for a model random in eval mode.

    ``built_in``: modules random in eval mode by design (``random_in_eval``), named as
    the cause.

    Example::

        >>> stochastic_text(0.4, 94)[:72]
        'The model is random in eval mode (seen at step 94): two passes over the '
        >>> print(stochastic_text(0.1, 47, [("body.2", "FractionalMaxPool2d")])[147:222])
        `body.2` (FractionalMaxPool2d) draws its pooling regions anew at every call
    """
    seen = (
        f"The model is random in eval mode (seen at step {step}): two passes over the same "
        f"val probe images in eval mode gave logits {spread:.0%} apart (of the largest). "
    )
    if built_in:
        names = listed([f"`{n}` ({t})" for n, t in built_in], quote=False)
        one = len(built_in) == 1
        return seen + (
            f"{names} draw{'s' if one else ''} {'its' if one else 'their'} pooling regions "
            "anew at every call, in eval mode too (PyTorch's design): the logged val metrics "
            "are those of one random draw. Give them fixed `_random_samples` for a "
            "deterministic model, or average several passes at test time as fractional "
            "max-pooling's paper does."
        )
    return seen + (
        "Something in `forward` draws random numbers, or changes with every call, whatever "
        "`model.eval()` says: `F.dropout(x, p)` (its `training=True` default) instead of "
        "`nn.Dropout` or `F.dropout(x, p, training=self.training)`, or noise added in "
        "`forward`; or state `forward` updates (a counter, an attribute or frozen parameter "
        "annealed in place, a forward hook) gives each pass other outputs. Validation "
        "and the deployed model then run dropped-out (noisy) models: the logged val metrics "
        "are below the model's own. If you sample predictions on purpose (Monte Carlo "
        "dropout), this is expected."
    )
