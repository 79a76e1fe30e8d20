"""What the activation monitor watches: the layers ``"auto"`` falls back to, and their call sites.

A watched module may run more than once per forward pass (one ``nn.ReLU`` reused
after every conv); each run is a call site (``relu#0``, ``relu#1``) with its own
statistics. ``trace_sites`` learns them in one probe pass, with what each needs
(``SiteInfo``): its channel axis and width, how activity is read (``mode``), and
which layer's weight gradient belongs to it. ``fallback_layers`` picks what to
watch in a model without activation modules (``F.relu`` in ``forward``).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh())
    >>> counts, sites = trace_sites(net, {"1": net[1]}, lambda: net(torch.zeros(1, 1, 3, 3)))
    >>> sites["1"].producer, sites["1"].channels, sites["1"].mode, sites["1"].bounds
    ('0', 4, 'magnitude', (-1.0, 1.0))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.activations.consumers import consumer_kind, first_consumers
from lightning_cnnviz.activations.stats import SYMMETRIC_TYPES, output_bounds
from lightning_cnnviz.core.activation_kind import (
    activation_kind,
    is_activation,
    saturation_range,
    upper_rail,
)
from lightning_cnnviz.core.capture import LayerCapture, first_tensor, module_name, site_name
from lightning_cnnviz.core.layer_types import ACTIVATION_TYPES, CONV_TYPES
from lightning_cnnviz.core.outputs import guess_output_key
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.weight_leaves import weight_param

__all__ = ["SiteInfo", "fallback_layers", "trace_sites"]

_FALLBACK_TYPES = (*CONV_TYPES, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Linear)


def fallback_layers(available: Mapping[str, nn.Module]) -> list[str]:
    """Pre-activation layers to watch when a model has no activation module (``F.relu``).

    Conv, BatchNorm and Linear outputs, read as "is it ever positive"; a conv
    directly followed by a BatchNorm gives way to it (the BN output is what the
    activation sees), and the last of them (the output layer) is left out.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(8, 2))
        >>> fallback_layers(dict(net.named_children()))
        ['1']
    """
    names = list(available)
    # the rule looks at each module's successor, so it filters here rather than
    # through ``selection.of_type`` (whose rules need the model, not just the names)
    picked = [n for n, m in available.items() if isinstance(m, _FALLBACK_TYPES)][:-1]
    return [
        n
        for n in picked
        if not (
            isinstance(available[n], CONV_TYPES)
            and names.index(n) + 1 < len(names)
            and isinstance(available[names[names.index(n) + 1]], nn.modules.batchnorm._BatchNorm)
        )
    ]


@dataclass(frozen=True)
class SiteInfo:
    """What a probe pass taught about one call site of a watched layer.

    Attributes:
        module: the watched module's name.
        producer: the nearest preceding module with a weight matrix (conv, linear)
            in execution order, or the module itself: whose weight gradient to read.
        channel_dim: channel axis of its output (-1 after a linear layer, else 1).
        channels: number of channels (units).
        mode: how activity is read (``reductions.batch_parts``): ``"positive"`` for
            rectifier-like activation modules, ``"magnitude"`` for zero-centred ones
            (Tanh), ``"preactivation"`` for any other module (dead = never positive).
        bounds: output range of a saturating activation, else None.
        nonnegative: the output is ``>= 0`` wherever finite (a plain ReLU or ReLU6).
        kind: what the module computes (``core.activation_kind``): ``"rectifier"``
            (units can die), ``"leaky"`` (never dead, maybe dormant), ``"saturating"``;
            None for a pre-activation (a conv/BN/linear output, read as a ReLU input),
            ``"leaky"`` for one a non-rectifier reads (``torch.tanh``, ``F.gelu``:
            ``consumers.py``), ``"linear"`` for one no activation reads (a normalisation
            re-centres it, or it is the model's output: the logits): no unit of it dies.
        squeezed: its maps are pooled to one position (a squeeze-excite or attention
            bottleneck, whose units weigh channels: ``dead_rules.dead_reason``).
    """

    module: str
    producer: str | None
    channel_dim: int
    channels: int
    mode: str
    bounds: tuple[float, float] | None
    nonnegative: bool = False
    kind: str | None = "rectifier"
    squeezed: bool = False


def _after(kind: str | None) -> str | None:
    """A pre-activation's kind from the function that reads it next.

    ``None`` (a ReLU input: dead when never positive) unless a non-rectifier reads it, then
    ``"leaky"`` (never dead: a negative input to Tanh or GELU still passes gradient), or a
    normalisation, then ``"linear"`` (its sign is not what the next layer sees).
    """
    if kind in (None, "rectifier"):
        return None
    return "linear" if kind == "linear" else "leaky"


def _mode(module: nn.Module, kind: str | None, bounds: tuple[float, float] | None) -> str:
    if isinstance(module, SYMMETRIC_TYPES) or (kind == "saturating" and bounds and bounds[0] < 0):
        return "magnitude"
    if isinstance(module, _FALLBACK_TYPES):
        return "preactivation"
    return "positive" if isinstance(module, ACTIVATION_TYPES) or kind else "preactivation"


def _squeezed(shape: tuple[int, ...]) -> bool:
    """Whether a map of ``shape`` is pooled to one position: a squeeze-excite bottleneck.

    Example::

        >>> _squeezed((8, 16, 1, 1)), _squeezed((8, 16, 7, 7)), _squeezed((8, 16))
        (True, False, False)
    """
    return len(shape) >= 3 and all(side == 1 for side in shape[2:])


def _is_branch(k: int, events: list[tuple[str, Tensor, Tensor | None]]) -> bool:
    """Event ``k`` reads the output of an earlier event, not of the one just before it.

    That is a shortcut (a residual block's downsampling conv, run after the main
    path): the activation after the addition belongs to the main path's layer.
    """
    inp = events[k][2]
    if inp is None or k < 2 or _same(inp, events[k - 1][1]):
        return False
    return any(_same(inp, out) for _, out, _ in events[: k - 1])


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def _has_weight_matrix(module: nn.Module) -> bool:
    weight = weight_param(module)  # a parametrized weight is not computed (nor moved) here
    return isinstance(weight, Tensor) and weight.dim() >= 2


def _head(events: list[tuple[str, Any, Any]], result: Any) -> str | None:
    """The last layer whose output is the model's (its logits, where it returns several).

    Layers called after it feed another output (a side head): the depth profile ends
    there (setups hunt 64: a ``{"logits", "aux"}`` model whose auxiliary Linear on the raw
    input ran last was read as the last layer: "vanishing gradients", 1.2e-7 against its
    6.7e-4, while the main branch's first and last layers got the same gradient).
    """
    try:
        out = first_tensor(result, guess_output_key(result)[0]).detach().float()
        same = (n for n, kept, _ in reversed(events) if _scores_of(kept.float(), out))
        return next(same, None)
    except Exception:  # an output of its own kind: the whole call order, as before
        return None


def _scores_of(kept: Tensor, out: Tensor) -> bool:
    """Whether ``out`` is ``kept``, or each row of it an affine image of ``kept``'s.

    As ``log_softmax``, a temperature or a scale leave them (setups hunt 65: a
    ``log_softmax`` on the logits hid their Linear, and the side head run after it was
    read as the last layer again); a softmax's log is one too. Rows of one value: only
    ``out`` itself.

    Example::

        >>> x = torch.randn(3, 5)
        >>> _scores_of(x, x.log_softmax(1)), _scores_of(x, x.softmax(1)), _scores_of(x, x.flip(1))
        (True, True, False)
    """
    if kept.shape != out.shape:
        return False
    if kept.equal(out):
        return True
    if kept.dim() < 2 or kept[0].numel() < 2 or not out.isfinite().all():
        return False
    rows = kept.flatten(1).double()
    for image in (out, out.log() if (out > 0).all() else None):
        if image is not None and _correlated(rows, image.flatten(1).double()):
            return True
    return False


def _correlated(a: Tensor, b: Tensor) -> bool:
    """Whether every row of ``b`` is an increasing affine image of ``a``'s (correlation ~1)."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    spread = a.norm(dim=1) * b.norm(dim=1)
    if not (spread > 0).all():
        return False
    return bool(((a * b).sum(1) / spread).min() > 1 - 1e-6)


def trace_sites(
    model: nn.Module,
    selected: Mapping[str, nn.Module],
    run: Callable[[], Any],
    order: list[str] | None = None,
) -> tuple[dict[str, int], dict[str, SiteInfo]]:
    """Call counts of the selected modules and a ``SiteInfo`` per call site, from one pass.

    ``run`` performs the forward pass (in eval mode, without gradients). A site's
    producer skips a shortcut conv run between the main path and the activation
    (``_is_branch``). ``order``, if given, receives the layers with a weight matrix
    in the order of their first call (depth order, for the gradient profile), up to
    the one whose output the model returns (``_head``).

    Example::

        >>> import torch
        >>> relu = nn.ReLU()
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), relu, nn.Flatten(), nn.Linear(4, 3), relu)
        >>> counts, sites = trace_sites(net, {"1": relu}, lambda: net(torch.zeros(2, 1, 3, 3)))
        >>> counts, [(s, i.producer, i.channel_dim, i.channels) for s, i in sites.items()]
        ({'1': 2}, [('1#0', '0', 1, 4), ('1#1', '3', -1, 3)])
    """
    layers = named_layers(model)
    weighted = {n: m for n, m in layers.items() if _has_weight_matrix(m)}
    watched = {**weighted, **selected}
    # every call named apart (``name#i``), with its input, in call order
    with probe_mode(model), LayerCapture(watched, shared=set(watched), inputs=True) as cap:
        result = run()
    events = [(module_name(key), out, cap.inputs.get(key)) for key, out in cap.outputs.items()]
    fallback = {n: m for n, m in selected.items() if isinstance(m, _FALLBACK_TYPES)}
    consumers = {}
    if fallback:  # a functional activation after them: `torch.tanh` leaves no unit dead
        with probe_mode(model):
            consumers = first_consumers(fallback, run)
    counts = {name: sum(1 for n, *_ in events if n == name) for name in selected}
    if order is not None:
        depth = list(dict.fromkeys(n for n, *_ in events if n in weighted))
        head = _head(events, result)
        order.extend(depth[: depth.index(head) + 1] if head in depth else depth)
    shared = {name for name, count in counts.items() if count > 1}
    calls = dict.fromkeys(selected, 0)
    sites: dict[str, SiteInfo] = {}
    producer = None
    for k, (name, out, _) in enumerate(events):
        if name in weighted:
            keep = producer is not None and _is_branch(k, events)
            producer = producer if keep else name
        if name not in selected:
            continue
        shape = tuple(out.shape)
        site = site_name(name, calls[name], shared)
        calls[name] += 1
        module = selected[name]
        linear = isinstance(weighted.get(producer or ""), nn.Linear | nn.Bilinear)
        dim = -1 if linear or len(shape) <= 2 else 1
        channels = shape[dim] if shape else 1
        if isinstance(result, Tensor) and _same(out, result) and not is_activation(module):
            kind = "linear"  # the logits: a class never scored above 0 is no dead unit
        elif not isinstance(module, _FALLBACK_TYPES):
            kind = activation_kind(module, channels)
        else:
            kind = _after(consumer_kind(consumers.get(name)))
        bounds = output_bounds(module) or (
            saturation_range(module) if kind == "saturating" else None
        )
        if bounds is None and kind == "rectifier" and (rail := upper_rail(module)) is not None:
            bounds = (-math.inf, rail)  # the top only: at 0 a unit is dead, told apart
        sites[site] = SiteInfo(
            name, producer, dim, channels, _mode(module, kind, bounds), bounds,
            type(module) in (nn.ReLU, nn.ReLU6), kind, _squeezed(shape),
        )  # fmt: skip
    return counts, sites
