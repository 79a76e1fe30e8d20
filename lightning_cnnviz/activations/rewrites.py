"""Layers written outside the optimiser: their norms read at each log, and what moved them.

Nothing here knows about Lightning. ``weight_norms`` reads, at every log, the norm of each
watched layer's weights and biases and of every normalisation layer's scale and shift
(from the leaf parameters: a parametrized weight is not computed). A whole layer's norm
``SHRUNK`` x apart between two logs is no update's doing (``rewritten``: a callback
zeroing it, a bias shifted); a norm that moves between a step's update and the next batch,
where no update runs, is written by something else (``written_between``: a clamp or a
constraint after every step). The words of each are here too; the dead-units and
divergence findings name them as causes.

Example::

    >>> rewritten({"conv": 3.2, "conv:bias": 0.4}, {"conv": 3.1, "conv:bias": 800.0})
    [('conv', 'biases', 0.4, 800.0)]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.activations.init_weights import NORM_LAYERS
from lightning_cnnviz.core.real_values import real_values
from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.update_size import update_norms
from lightning_cnnviz.core.weight_leaves import weight_param

__all__ = [
    "REACH",
    "SHRUNK",
    "WRITTEN",
    "norm_tensor",
    "rewrite_words",
    "rewritten",
    "silenced_by",
    "update_reach",
    "weight_norms",
    "written_between",
    "written_words",
]


def weight_norms(
    model: nn.Module, depth: Sequence[str], held: Collection[int] | None = None
) -> dict[str, float]:
    """The norm of each ``depth`` layer's ``weight`` and ``bias`` (``init_reads``' layers).

    And of every normalisation layer's (its scale and shift: hunt 59, a BatchNorm's bias
    shifted by -6 from a callback silenced the ReLU after it, told "lower the learning
    rate"). Keyed by the layer's name, and ``name:bias``; one host read. Read at every
    log: a layer whose weights collapse, or whose biases jump, between two logs was
    rewritten outside the optimiser (``rewritten``). ``held``: the ids of the parameters
    an optimiser holds and can step (``held_by(..., moved=True)``), the only ones read where
    given: a
    frozen teacher or an EMA copy kept on the module is written apart from the optimiser by
    design (setups hunt 62: a mean teacher's BatchNorm named as what silenced the student's
    units).

    Example::

        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        >>> _ = nn.init.ones_(net[0].weight), nn.init.zeros_(net[0].bias)
        >>> {n: round(v, 4) for n, v in weight_norms(net, ["0", "1"]).items()}
        {'0': 3.4641, '0:bias': 0.0}
    """
    names, norms = norm_tensor(model, depth, held)
    return dict(zip(names, norms.double().cpu().tolist(), strict=True)) if names else {}


def norm_tensor(
    model: nn.Module, depth: Sequence[str], held: Collection[int] | None = None
) -> tuple[list[str], Tensor]:
    """``weight_norms``' keys and their norms in one tensor, on the model's device (no read).

    Example::

        >>> from torch import nn
        >>> names, norms = norm_tensor(nn.Sequential(nn.Linear(4, 3)), ["0"])
        >>> names, tuple(norms.shape)
        (['0', '0:bias'], (2,))
    """
    named = _leaves(model, depth, held)
    if not named:
        return [], torch.zeros(0)
    values = [torch.linalg.vector_norm(real_values(w.detach())).float() for _, w in named]
    return [n for n, _ in named], torch.stack(values)


def update_reach(
    model: nn.Module, depth: Sequence[str], optimizers: Sequence[Any], held: Collection[int]
) -> dict[str, float]:
    """For ``weight_norms``' keys, the norm of the update the optimisers now apply a step.

    How far the optimiser itself moves a layer each step (``core.update_size``): a SGD
    rate of 0.3 on a diverging net moved a BatchNorm's biases from norm 0.22 to 1.7 in
    four steps, which is no write outside it (setups hunt 64). Less the weight decay SGD's
    momentum carries, which grows with a weight written large and pulls it back (hunt 71:
    biases set to -20 under a decay of 0.02 read a reach that excused the jump). One host
    read.

    Example::

        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 1))
        >>> sgd = torch.optim.SGD(net.parameters(), lr=0.5)
        >>> net[0].weight.grad, net[0].bias.grad = torch.ones(1, 2), torch.ones(1)
        >>> update_reach(net, ["0"], [sgd], {id(p) for p in net.parameters()})
        {'0': 0.7071067690849304, '0:bias': 0.5}
    """
    named = _leaves(model, depth, held)
    steps = update_norms(optimizers, {id(w) for _, w in named}, less_decay=True)
    known = [(n, steps[id(w)]) for n, w in named if id(w) in steps]
    if not known:
        return {}
    values = torch.stack([v.to(known[0][1].device) for _, v in known])
    return dict(zip([n for n, _ in known], values.double().cpu().tolist(), strict=True))


def _leaves(
    model: nn.Module, depth: Sequence[str], held: Collection[int] | None
) -> list[tuple[str, Tensor]]:
    """``(key, leaf parameter)`` of each ``depth`` and normalisation layer's weight and bias."""
    layers = named_layers(model)
    norms = [n for n, m in layers.items() if isinstance(m, NORM_LAYERS) and n not in depth]
    read_from = [(n, layers[n]) for n in [*depth, *norms] if n in layers]
    # the leaves: a parametrized weight is computed on access, and spectral norm's power
    # iteration then moves its vectors in training mode (training no longer bit-identical)
    parts = [(key, read(m)) for n, m in read_from
             for key, read in ((n, weight_param), (f"{n}:bias", _bias))]  # fmt: skip
    return [(n, w) for n, w in parts
            if isinstance(w, Tensor) and (held is None or id(w) in held)]  # fmt: skip


def _bias(module: nn.Module) -> Tensor | None:
    """``module``'s own ``bias`` parameter, not computed (a property or parametrization)."""
    return module._parameters.get("bias")


WRITTEN = 1e-4  # a norm this much apart (relative) across no update: written outside it


def written_between(
    names: Sequence[str], before: Sequence[float], after: Sequence[float]
) -> list[tuple[str, str, float, float]]:
    """``rewritten``'s entries for layers whose norm changed where no update ran.

    ``before``: the norms at a step's end (after its optimizer step), ``after``: at the
    next batch's start. Nothing of the optimiser's runs between them: a change is a
    callback's, a hook's or the module's own hooks' (a clamp after every step, a weight
    written back), which a norm ``SHRUNK`` x apart between two logs does not show (setups
    hunt 60: conv2 clamped at or below 0 after every step, every unit after it dead, told
    "lower the learning rate").

    Example::

        >>> written_between(["conv", "conv:bias"], [3.2, 0.4], [1.6, 0.4])
        [('conv', 'weights', 3.2, 1.6)]
        >>> [f[1] for f in written_between(["c", "c:bias"], [3.2, 0.4], [3.1, 0.1])]  # most first
        ['biases', 'weights']
    """
    found = []
    for key, b, a in zip(names, before, after, strict=True):
        if abs(a - b) > WRITTEN * max(abs(b), 1e-12):
            name, _, bias = key.partition(":")
            found.append((name, "biases" if bias else "weights", b, a))
    return sorted(found, key=lambda f: -abs(f[3] - f[2]) / max(abs(f[2]), 1e-12))


SHRUNK = 5.0  # a layer's norm changing this many times between two logs: rewritten
# ... by more than this many times what the optimiser's update at the log moves it a step,
# over the steps between them (the update may have been larger between the logs)
REACH = 3.0


def rewritten(
    before: Mapping[str, float],
    now: Mapping[str, float],
    reach: Mapping[str, float] | None = None,
    steps: int = 1,
    decay: float = 0.0,
) -> list[tuple[str, str, float, float]]:
    """``(layer, "weights" or "biases", norm before, now)`` for the layers rewritten.

    Weights whose norm fell ``SHRUNK`` x between two logs: no update shrinks a whole
    layer that fast (decay raised during the run is its own cause, named first); a
    callback zeroing it does, and the optimiser's momentum then moves it only a little
    off zero (held out, hunt 34: conv2 zeroed at epoch 3 under Adam, every unit after it
    silent, told "the training batches may no longer carry the label"). Biases whose
    norm rose ``SHRUNK`` x, past the weights' own (hunt 35: conv2's biases set to -100,
    every unit after it silent, told the same). Not where the optimiser's own update
    (``reach``, its norm a step, ``update_reach``) moves the layer that far in the
    ``steps`` between the logs, ``REACH`` x over; nor weights a weight ``decay`` taking
    that share of every weight a step shrinks as far (hunt 70: SGD 0.05 with momentum 0.9
    and `weight_decay=0.2`, about 10% a step, took a conv from norm 0.0037 to 0.00019
    between two logs: "something outside the optimiser rewrote it").

    Example::

        >>> rewritten({"conv": 3.2, "fc": 1.0}, {"conv": 0.1, "fc": 0.9})
        [('conv', 'weights', 3.2, 0.1)]
        >>> rewritten({"conv": 3.2, "conv:bias": 0.4}, {"conv": 3.1, "conv:bias": 800.0})
        [('conv', 'biases', 0.4, 800.0)]
        >>> now = {"bn": 1.2, "bn:bias": 1.72}
        >>> rewritten({"bn": 2.0, "bn:bias": 0.22}, now, reach={"bn:bias": 0.85}, steps=4)
        []
        >>> rewritten({"conv": 3.2}, {"conv": 0.1}, steps=40, decay=0.1)
        []
        >>> before = {"gn": 2.0, "gn:bias": 0.16, "fc": 5.0, "fc:bias": 0.93}
        >>> now = {**before, "gn:bias": 113.0, "fc:bias": 13.8}
        >>> [f[0] for f in rewritten(before, now)]  # the largest jump first
        ['gn', 'fc']
    """
    kept = (1.0 - min(max(decay, 0.0), 0.99)) ** steps  # what the decay leaves of a weight
    found = []
    for key, v in now.items():
        b = before.get(key)
        if b is None or abs(v - b) <= REACH * steps * (reach or {}).get(key, 0.0):
            continue
        name, _, bias = key.partition(":")
        if not bias and b > 0 and v * SHRUNK < b and v * REACH < b * kept:
            found.append((name, "weights", b, v))
        elif bias and v > SHRUNK * b and v > now.get(name, float("inf")):
            found.append((name, "biases", b, v))
    # the largest jump first, the layer written: the optimiser moves the layers after it
    # too (hunt 73: a GroupNorm's shift set to -20, 0.16 -> 113, named the conv after it,
    # whose biases went 0.93 -> 13.8 as the optimiser answered the collapse)
    return sorted(found, key=lambda f: -max(f[2], f[3]) / max(min(f[2], f[3]), 1e-12))


def rewrite_words(found: tuple[str, str, float, float]) -> str:
    """One ``rewritten`` layer in words: what moved, and from what norm to what.

    Example::

        >>> rewrite_words(("conv", "biases", 0.4, 800.0))
        'The biases of `conv` jumped from norm 0.4 to 800 between two logs'
    """
    name, part, before, now = found
    how = "collapsed" if part == "weights" else "jumped"
    return f"The {part} of `{name}` {how} from norm {before:.3g} to {now:.3g} between two logs"


def written_words(found: tuple[str, str, float, float]) -> str:
    """One ``written_between`` layer in words.

    Example::

        >>> written_words(("conv", "weights", 3.2, 1.6))[:58]
        'The weights of `conv` changed from norm 3.2 to 1.6 between'
        >>> written_words(("conv", "biases", 0.40875, 0.40912))[:60]
        'The biases of `conv` changed from norm 0.4088 to 0.4091 betw'
    """
    name, part, before, now = found
    digits = next((d for d in range(3, 8) if f"{before:.{d}g}" != f"{now:.{d}g}"), 8)
    return (
        f"The {part} of `{name}` changed from norm {before:.{digits}g} to {now:.{digits}g} "
        "between a step's update and the next batch, where no update runs"
    )


def silenced_by(
    rewrite: Sequence[tuple[str, str, float, float]],
    written: Sequence[tuple[str, str, float, float]],
) -> str | None:
    """A layer rewritten (``rewritten``) or written (``written_between``) as silent units' cause.

    Held out (hunt 65): a GroupNorm's bias shifted by -20 mid-run; (setups hunt 60) conv2
    clamped at or below 0 after every step: both told "lower the learning rate".

    Example::

        >>> silenced_by([("gn", "biases", 0.16, 113.0)], [])[:47]
        'The biases of `gn` jumped from norm 0.16 to 113'
        >>> silenced_by([], []) is None
        True
    """
    if rewrite:
        return (
            f"{rewrite_words(rewrite[0])}: no update moves a whole layer that fast, so "
            "something outside the optimiser rewrote it, and units went silent with it."
        )
    if written:
        return (
            f"{written_words(written[0])}: something outside the optimiser writes that layer "
            "(a clamp or constraint after each step, a hook), and units went silent with it."
        )
    return None
