"""How the layers are called in one probe pass: how often, and with their own weights.

``count_call_sites`` counts each layer's calls (a module reused in ``forward`` has
several call sites, each watched on its own); ``unused_weights`` finds the layers
called with other tensors in place of their registered weights (a stateless call), or
not called at all (a copy of the model kept on it); ``outputs_unused`` those called
whose output the model's own does not depend on; ``called_alone`` finds the branches
some probe images take alone; ``apart_from_training`` tells a layer
an eval-mode pass does not call from a branch run in training mode only.

Example::

    >>> import torch
    >>> from torch import Tensor, nn
    >>> relu = nn.ReLU()
    >>> net = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    >>> count_call_sites(net, {"1": relu}, lambda: net(torch.zeros(1, 2)))
    {'1': 2}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor, nn

from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.module_paths import registered
from lightning_cnnviz.core.own_hooks import own_hook
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.weight_leaves import weight_param

__all__ = ["ALONE", "apart_from_training", "called_alone", "count_call_sites",
           "in_weight_average", "outputs_unused", "unused_weights"]  # fmt: skip

ALONE = 8  # probe images passed one at a time to find a branch some of them take


def count_call_sites(
    model: nn.Module, layers: Mapping[str, nn.Module], run: Callable[[], Any]
) -> dict[str, int]:
    """How many times each layer runs in one forward pass (``run`` performs the pass).

    Example::

        >>> import torch
        >>> relu = nn.ReLU()
        >>> net = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
        >>> count_call_sites(net, {"1": relu}, lambda: net(torch.zeros(1, 2)))
        {'1': 2}
    """
    with probe_mode(model), LayerCapture(layers, on_output=lambda site, out: None) as cap:
        run()
    return {name: cap.call_counts.get(name, 0) for name in layers}


def called_alone(
    model: nn.Module, layers: Mapping[str, nn.Module], x: Tensor, passes: int = ALONE
) -> dict[str, int]:
    """Of ``layers``, those that one of the first ``passes`` images of ``x`` alone calls.

    With the most calls any of those images makes. A branch ``forward`` chooses by its
    input (``ca(h) if x.mean() > t else cb(h)``) is trained on the batches that take it,
    which the probe batch may not (setups hunt 74: such a conv was said "not called",
    "neither shaped like the input" and "no part in training"); a head run in training
    mode only is called by none.

    Example::

        >>> import torch
        >>> class Branch(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)
        ...     def forward(self, x):
        ...         return self.a(x) if x.mean() > 0 else self.b(x)
        >>> net, x = Branch(), torch.tensor([[3.0, 3.0], [-1.0, -1.0]])
        >>> count_call_sites(net, {"b": net.b}, lambda: net(x))  # the batch takes `a`
        {'b': 0}
        >>> called_alone(net, {"a": net.a, "b": net.b}, x)
        {'a': 1, 'b': 1}
    """
    found: dict[str, int] = {}
    for one in x[:passes].split(1):
        counts = count_call_sites(model, layers, lambda one=one: model(one))
        found |= {n: max(c, found.get(n, 0)) for n, c in counts.items() if c}
    return {name: found[name] for name in layers if name in found}


def unused_weights(
    model: nn.Module, layers: Mapping[str, nn.Module], run: Callable[[], Any]
) -> dict[str, str]:
    """The layers whose registered ``weight`` ``forward`` does not use, and why.

    ``"swapped"``: called with another tensor in its place: ``torch.func.functional_call``
    (a stateless call) puts other tensors in place of the module's own for the call, so
    the registered weights are never used nor trained (setups hunt 23: they were drawn as
    kernels and told "frozen, load the pretrained weights"). ``"uncalled"``: ``forward``
    does not call the layer at all: a copy kept on the module, an
    ``torch.optim.swa_utils.AveragedModel`` or an EMA, updated apart from the optimiser
    (setups hunt 54: told "frozen layers, left out of the optimiser"). Parametrized or
    pruned weights, computed at each call, are not counted.

    Example::

        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3))
        >>> params = {k: v.detach().clone() for k, v in net.named_parameters()}
        >>> x = torch.zeros(1, 1, 5, 5)
        >>> unused_weights(net, {"0": net[0]}, lambda: torch.func.functional_call(net, params, x))
        {'0': 'swapped'}
        >>> unused_weights(net, {"0": net[0]}, lambda: net(x))
        {}
        >>> copy = nn.Conv2d(1, 2, 3)
        >>> unused_weights(net, {"0": net[0], "copy": copy}, lambda: net(x))
        {'copy': 'uncalled'}
    """
    own = {name: w for name, m in layers.items()
           if isinstance(w := m._parameters.get("weight"), nn.Parameter)}  # fmt: skip
    found: dict[str, str] = {}
    called: set[str] = set()

    def check(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            called.add(name)
            if module._parameters.get("weight") is not own[name]:
                found.setdefault(name, "swapped")

        return hook

    handles = [layers[name].register_forward_pre_hook(own_hook(check(name))) for name in own]
    try:
        with probe_mode(model):
            run()
    finally:
        for handle in handles:
            handle.remove()
    found |= {name: "uncalled" for name in own if name not in called}
    return {name: found[name] for name in own if name in found}


def outputs_unused(
    model: nn.Module, layers: Mapping[str, nn.Module], run: Callable[[], Any]
) -> list[str]:
    """Of ``layers``, those whose output the model's own output does not depend on.

    Computed by ``forward`` and thrown away: a timm ``features_only`` net hooked
    (``feature_cls="hook"``) runs its whole backbone and returns the stages asked for
    (setups hunt 75: the later stages, given no gradient, were told "frozen layers ... look
    untrained", a problem, on a run at 100% val accuracy). Each output replaced by
    ``1 - output`` in probe passes (``run`` performs one), a group at a time and halved
    where the model's output changes; a layer cut off by a ``.detach()`` still changes
    it, and is kept; so is one the pass does not call. Unchanged means equal, and a model
    random in eval mode is kept too.

    Example::

        >>> class Wasteful(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)
        ...     def forward(self, x):
        ...         self.b(x)  # computed, never used
        ...         return self.a(x).detach() * 2
        >>> net, x = Wasteful(), torch.ones(1, 2)
        >>> outputs_unused(net, {"a": net.a, "b": net.b}, lambda: net(x))
        ['b']
        >>> outputs_unused(net, {"spare": nn.Linear(2, 2)}, lambda: net(x))  # never called
        []
    """

    def outputs(changed: Mapping[str, nn.Module]) -> list[Tensor]:
        swap = own_hook(lambda m, a, out: 1 - out if isinstance(out, Tensor) else None)
        handles = [layer.register_forward_hook(swap) for layer in changed.values()]
        try:
            with probe_mode(model), torch.no_grad():
                found: list[Tensor] = []
                apply_to_collection(run(), Tensor, found.append)
                return found
        finally:
            for handle in handles:
                handle.remove()

    clean = outputs({})

    def unused(group: dict[str, nn.Module]) -> list[str]:
        out = outputs(group)
        same = len(out) == len(clean) and all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(out, clean, strict=True)
        )
        if same or len(group) == 1:
            return list(group) if same else []
        names = list(group)
        half = len(names) // 2
        return unused({n: group[n] for n in names[:half]}) + unused(
            {n: group[n] for n in names[half:]}
        )

    # a layer the pass does not call changes nothing either: not thrown away, not computed
    # (hunt 105: a branch only training batches take was said "throws its output away")
    counts = count_call_sites(model, layers, run) if layers and clean else {}
    called = {name: layer for name, layer in layers.items() if counts.get(name)}
    return unused(called) if called else []


# words of a weight average's class name: AveragedModel, timm's ModelEmaV2, EMA, SWA,
# ExponentialMovingAverage
_COPIES = frozenset(("averaged", "ema", "swa", "moving"))
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+")  # ModelEmaV2: Model, Ema, V


def apart_from_training(model: nn.Module, name: str) -> bool:
    """Whether layer ``name``, not called in an eval-mode pass, stands apart from training.

    Its weight asks for a gradient (called in training, it would get one: still, it is
    outside the graph), or it sits in a weight average's copy (by the copy's class name: a
    timm ``ModelEmaV2`` turns its gradients off). Not a branch frozen by mistake that
    runs in training mode only (setups hunt 55: an Inception-style auxiliary head whose
    conv had `requires_grad=False` was said to "take no part in training").

    Example::

        >>> from torch.optim.swa_utils import AveragedModel
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3).requires_grad_(False))
        >>> net.add_module("swa", AveragedModel(nn.Conv2d(1, 2, 3).requires_grad_(False)))
        >>> [apart_from_training(net, name) for name in ("0", "1", "swa.module")]
        [True, False, True]
    """
    layer = registered(model, name)
    weight = weight_param(layer) if layer is not None else None
    if weight is not None and weight.requires_grad:
        return True
    return in_weight_average(model, name)


def in_weight_average(model: nn.Module, name: str) -> bool:
    """Whether layer ``name`` is or sits in a weight average's copy kept on ``model``.

    By the class names of the modules holding it (``model``'s own aside): ``AveragedModel``,
    timm's ``ModelEmaV2``/``V3``, ``EMA``, ``SWA...``, ``ExponentialMovingAverage``.

    Example::

        >>> from torch.optim.swa_utils import AveragedModel
        >>> net = nn.Sequential(nn.BatchNorm2d(2))
        >>> net.add_module("ema", AveragedModel(nn.BatchNorm2d(2)))
        >>> in_weight_average(net, "0"), in_weight_average(net, "ema.module")
        (False, True)
    """
    parts = name.split(".")  # not the model itself: a LightningModule named `EMAClassifier`
    owners = [registered(model, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    words = {w.lower() for m in owners if m is not None for w in _WORD.findall(type(m).__name__)}
    return bool(words & _COPIES)
