"""Weights whose initialisation stops learning: zero layers, identical units, negative biases.

Nothing here knows about Lightning. Read once, at the first log (after the first
updates), on the layers the monitor orders by depth (``init_reads``: all three):

* ``zero_weights``: a layer initialised to zero stays silent: its units compute the
  same nothing, its ReLUs are "dead" from the start and no gradient reaches the layers
  below it. No finding of its own: the dead-unit and not-learning findings name it;
* ``identical_units``: every unit of a layer holds the same weights (a constant
  initialisation, ``nn.init.constant_``). Units that see the same inputs with the same
  weights compute the same output and get the same gradient, so no update tells them
  apart: the layer works as one unit, for good (held out: a CNN initialised to 0.02
  throughout reached 21% val after 5 epochs; its hidden layers were still identical to
  the last bit). The output layer breaks its own symmetry (each class gets its own
  gradient), so a layer still identical after the first updates is stuck. Grouped and
  depthwise convolutions are left out: their units see different inputs;
* ``negative_biases``: a layer whose biases start far below zero (``NEG_BIAS`` times the
  spread its weights give a unit's input sum, or a normalisation layer's shift that many
  times its scale): behind a ReLU its units start dead, behind a SiLU or GELU dormant,
  and little gradient reaches the layers below. Held out (hunt 18): every bias at -6 in a
  SiLU CNN, or fc1's at -3 in a GroupNorm ReLU net, held the run at chance, told as
  vanishing gradients or dead units with "lower the learning rate" first.

Example::

    >>> from torch import nn
    >>> stuck, fine = nn.Linear(4, 3), nn.Linear(4, 3)
    >>> _ = nn.init.constant_(stuck.weight, 0.02)
    >>> identical_units([("stuck", stuck), ("fine", fine)])
    ['stuck']
    >>> _ = nn.init.zeros_(fine.weight)
    >>> zero_weights([("stuck", stuck), ("fine", fine)])
    ['fine']
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.activation_kind import activation_kind
from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.voice import listed

__all__ = [
    "NEG_BIAS",
    "NORM_LAYERS",
    "QUIET",
    "SAME",
    "SILENT",
    "identical_text",
    "identical_units",
    "init_reads",
    "negative_biases",
    "negative_text",
    "unnormalised",
    "zero_weights",
]

SAME = 1e-6  # units this close (relative to the layer's largest weight) are the same unit
# A layer's median bias this many times below the median norm of its units' weights (the
# spread of a unit's input sum for inputs of unit scale): PyTorch's default draws biases
# within 1/sqrt(fan_in), 0.1x that norm or less
NEG_BIAS = 2.0
SILENT = 0.5  # ...told where a watched site has this share of its units never positive,
# or this share of its outputs not positive: a unit positive at a few of its many positions
# is not dead, yet a ReLU passing under 10% of them is silenced (held-out hunt 122)
QUIET = 0.9
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)  # scale and shift
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity)
_TABLES = (nn.Embedding, nn.EmbeddingBag)
_RECTIFYING = ("rectifier", "leaky")  # silent (ReLU) or dormant (SiLU, GELU) below zero


def zero_weights(layers: Sequence[tuple[str, nn.Module]]) -> list[str]:
    """Names of the layers whose ``weight`` is all zero, in order (one host transfer)."""
    named = [(n, w) for n, m in layers if isinstance(w := getattr(m, "weight", None), Tensor)]
    if not named:
        return []
    flags = torch.stack([w.detach().abs().amax() == 0 for _, w in named]).cpu().tolist()
    return [name for (name, _), zero in zip(named, flags, strict=True) if zero]


def zero_norms(layers: Sequence[tuple[str, nn.Module]]) -> list[str]:
    """The normalisation layers whose scale (``weight``, gamma) is all zero, where all are.

    Each then outputs its bias whatever the input: nothing reaches the layers after it
    (hunt 30: every BatchNorm's gamma at 0 in a plain BN net, at chance with every unit
    silent from step 0, told as dead units with learning-rate remedies). Where some are
    not, those that are zero close residual branches on purpose (torchvision's
    ``zero_init_residual``, timm's ``zero_init_last``): none is named.

    Example::

        >>> from torch import nn
        >>> bn = nn.BatchNorm2d(4)
        >>> _ = nn.init.zeros_(bn.weight)
        >>> zero_norms([("bn", bn)]), zero_norms([("bn", bn), ("other", nn.BatchNorm2d(4))])
        (['bn'], [])
    """
    norms = [
        (n, m) for n, m in layers if isinstance(m, NORM_LAYERS) and isinstance(m.weight, Tensor)
    ]
    zero = zero_weights(norms)
    return zero if norms and len(zero) == len(norms) else []


def identical_units(layers: Sequence[tuple[str, nn.Module]]) -> list[str]:
    """Names of the trained layers whose units (output rows) all hold the same weights.

    Layers with a ``weight`` of two or more units that requires grad, ``groups == 1``
    where the layer has groups, and not all zero (``zero_weights`` says those). One host
    transfer.
    """
    named = [
        (name, w.detach().flatten(1))
        for name, module in layers
        if isinstance(w := getattr(module, "weight", None), Tensor)
        and w.requires_grad
        and w.ndim >= 2
        and len(w) >= 2
        and getattr(module, "groups", 1) == 1
    ]
    if not named:
        return []
    flags = (
        torch.stack(
            [(w - w[:1]).abs().amax() <= SAME * w.abs().amax() for _, w in named]
            + [w.abs().amax() > 0 for _, w in named]
        )
        .cpu()
        .tolist()
    )
    same, nonzero = flags[: len(named)], flags[len(named) :]
    return [name for (name, _), a, b in zip(named, same, nonzero, strict=True) if a and b]


def negative_biases(modules: Sequence[tuple[str, nn.Module]]) -> list[str]:
    """Names of the layers whose biases start far below zero (``NEG_BIAS``), in order.

    ``modules``: a model's ``named_modules()``. Layers with a ``weight`` of two dimensions or
    more and a ``bias``, but those whose next module (in the order they are defined) is a
    normalisation layer, which takes the bias out again; and normalisation layers before a
    rectifier (``_low_shifts``). One host transfer.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.GroupNorm(2, 8), nn.ReLU(),
        ...                     nn.Flatten(), nn.Linear(72, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> for layer in (net[0], net[4]):
        ...     _ = nn.init.constant_(layer.bias, -3.0)
        >>> negative_biases(list(net.named_modules()))
        ['4']
        >>> _ = nn.init.constant_(net[1].bias, -3.0)  # the shift the ReLU reads
        >>> negative_biases(list(net.named_modules()))
        ['1', '4']
    """
    layers = unnormalised(modules)
    weighted = [n for n, m in modules if isinstance(getattr(m, "weight", None), Tensor)]
    if layers and layers[-1][0] == weighted[-1]:
        # the output layer: its biases are the classes' priors, no unit behind a rectifier
        # (held-out hunt 122: every bias at -3 named the logits' Linear too)
        layers = layers[:-1]
    named = [
        (name, w.detach().flatten(1), b.detach())
        for name, module, w in layers
        if isinstance(b := getattr(module, "bias", None), Tensor)
        and b.numel() == len(w)
        and not b.is_complex()  # no complex bias lies below zero
    ]
    low = [
        (name, b.float().median() < -NEG_BIAS * w.float().norm(dim=1).median())
        for name, w, b in named
    ] + _low_shifts(modules)
    if not low:
        return []
    flags = torch.stack([t for _, t in low]).cpu().tolist()
    flags = dict(zip([n for n, _ in low], flags, strict=True))
    return [name for name, _ in modules if flags.get(name)]


def unnormalised(modules: Sequence[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module, Tensor]]:
    """``(name, layer, weight)`` of the layers whose output no normalisation layer takes next.

    ``modules``: a model's ``named_modules()``. Leaf layers with a ``weight`` of two
    dimensions or more (an ``nn.Embedding``'s is a table, no sum over inputs), but those
    whose next leaf module (in the order they are defined, past dropout) is a
    normalisation layer: it takes their scale and their bias out again.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 3))
        >>> [name for name, _, _ in unnormalised(list(net.named_modules()))]
        ['2']
    """
    leaves = [(n, m) for n, m in modules if not any(True for _ in m.children())]
    leaves = [(n, m) for n, m in leaves if not isinstance(m, (*_PASS_THROUGH, *_TABLES))]
    return [
        (name, module, w)
        for i, (name, module) in enumerate(leaves)
        if isinstance(w := getattr(module, "weight", None), Tensor)
        and w.ndim >= 2
        and not isinstance(w, nn.parameter.UninitializedParameter)  # a lazy layer, not built
        and not (i + 1 < len(leaves) and isinstance(leaves[i + 1][1], NORM_LAYERS))
    ]


def _low_shifts(modules: Sequence[tuple[str, nn.Module]]) -> list[tuple[str, Tensor]]:
    """Each affine normalisation layer before a rectifier, and whether its shift is low.

    Its input is normalised to unit spread, so its output is ``weight * z + bias``: a shift
    under ``-NEG_BIAS`` x the scale, in most channels, leaves under 2.3% of a unit's outputs
    positive (held-out hunt 122: BatchNorm1d biases at -3 left 0.08% and 0.86% of two ReLUs'
    outputs positive; the run was at 60% val against 100% with the default init, and ended
    "no problems found"). A scale of 0 with a shift of 0 (timm's ``zero_init_last``,
    torchvision's ``zero_init_residual``) is not low. Before a rectifier: the next module
    that computes something is a ReLU-like or leaky activation (``core.activation_kind``),
    or the layer holds one (timm's ``BatchNormAct2d``); a norm whose output is added to a
    residual or read by a convolution is left out.
    """
    out = []
    for i, (name, norm) in enumerate(modules):
        w, b = getattr(norm, "weight", None), getattr(norm, "bias", None)
        if not (
            isinstance(norm, NORM_LAYERS)
            and isinstance(w, Tensor)
            and isinstance(b, Tensor)
            and w.shape == b.shape
            and not b.is_complex()
            and activation_kind(_next_leaf(modules, i) or nn.Identity()) in _RECTIFYING
        ):
            continue
        out.append((name, (b.detach().float() + NEG_BIAS * w.detach().float().abs()).median() < 0))
    return out


def _next_leaf(modules: Sequence[tuple[str, nn.Module]], i: int) -> nn.Module | None:
    """The module after ``modules[i]`` (its own children first) that computes something."""
    for _, module in modules[i + 1 :]:
        if not any(True for _ in module.children()) and not isinstance(module, _PASS_THROUGH):
            return module
    return None


def init_reads(model: nn.Module, depth: Sequence[str]) -> dict[str, list[str]]:
    """The three reads at once: ``zero_layers``, ``identical_layers``, ``negative_layers``.

    ``depth``: the layer names (``selection.named_layers``) the monitor ordered by depth;
    the first two reads keep that order, the third reads every module.

    Example::

        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> _ = nn.init.zeros_(net[2].weight)
        >>> init_reads(net, ["0", "2"])["zero_layers"]
        ['2']
    """
    layers = named_layers(model)
    ordered = [(n, layers[n]) for n in depth if n in layers]
    return {
        "zero_layers": zero_weights(ordered) + zero_norms(list(layers.items())),
        "identical_layers": identical_units(ordered),
        "negative_layers": negative_biases(list(model.named_modules())),
    }


def negative_text(layers: Sequence[str], step: int, epoch: int) -> str:
    """The ``negative_biases`` problem in words.

    Example::

        >>> negative_text(["fc1"], 8, 0)[:62]
        'At step 8 (epoch 0): `fc1` starts with biases far below zero ('
    """
    names = listed(layers)
    verb = "starts" if len(layers) == 1 else "start"
    return (
        f"At step {step} (epoch {epoch}): {names} {verb} with biases far below zero (their "
        f"median under -{NEG_BIAS:g}x the spread of what they are added to: the weights' sum "
        "over a unit's inputs, or a normalisation layer's output, whose spread is its scale), "
        "and units are silent at the first log: behind a ReLU such units start dead, behind "
        "a SiLU or GELU dormant, and little gradient reaches the layers below. Try: biases at 0 or "
        "PyTorch's default initialisation (`nn.init.zeros_(layer.bias)`); a negative bias "
        "only where a layer is meant to start sparse, and small."
    )


def identical_text(layers: Sequence[str], step: int, epoch: int) -> str:
    """The ``symmetric_weights`` problem in words.

    Example::

        >>> identical_text(["conv1", "fc1"], 10, 0)[:77]
        'At step 10 (epoch 0): every unit of `conv1`, `fc1` holds the same weights (a '
    """
    names = listed(layers)
    return (
        f"At step {step} (epoch {epoch}): every unit of {names} holds the same weights "
        "(a constant initialisation, such as `nn.init.constant_`), still after the first "
        "updates. Units with the same inputs and weights compute the same output and get the "
        "same gradient, so training never tells them apart: each such layer works as a "
        "single unit. Try: a random initialisation (PyTorch's default, or He/Kaiming for "
        "ReLU nets, Xavier for Sigmoid/Tanh); constants only for biases and norm scales."
    )
