"""How the layers are called in one probe pass: how often, and with their own weights.

``count_call_sites`` counts each layer's calls (a module reused in ``forward`` has
several call sites, each watched on its own); ``unused_weights`` finds the layers
called with other tensors in place of their registered weights (a stateless call), or
not called at all (a copy of the model kept on it).

Example::

    >>> import torch
    >>> from torch import nn
    >>> relu = nn.ReLU()
    >>> net = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    >>> count_call_sites(net, {"1": relu}, lambda: net(torch.zeros(1, 2)))
    {'1': 2}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.own_hooks import own_hook
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["count_call_sites", "unused_weights"]


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
