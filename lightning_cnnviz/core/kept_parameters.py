"""The parameters a monitor's pass writes or replaces, put back as they were.

Nothing here knows about Lightning. A ``forward`` may write its own parameters: a
temperature annealed at every call (``nn.Parameter(..., requires_grad=False)``, in place,
through ``.data`` or re-assigned: setups hunts 54-55), a weight standardised in place; each
monitor's pass then wrote it again and the run trained differently. ``parameter_copies``
before a pass, ``put_back_parameters`` after it (``core.model_state.kept_state``).

Example::

    >>> from torch import nn
    >>> net = nn.Linear(2, 1)
    >>> saved = parameter_copies(net)
    >>> _ = net.weight.data.mul_(3)  # moves no version counter
    >>> put_back_parameters(net, saved)
    >>> torch.equal(net.weight, saved[0][3])
    True
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor, nn
from torch.nn.parameter import UninitializedParameter

from lightning_cnnviz.core.attribute_state import KEPT_NUMEL
from lightning_cnnviz.core.say import say

__all__ = ["SMALL_NUMEL", "parameter_copies", "put_back_parameters"]

_WRITES: weakref.WeakKeyDictionary[nn.Module, set[int]] = weakref.WeakKeyDictionary()
"""Per model, the parameters its passes were seen to write (by ``id``)."""

SMALL_NUMEL = 1 << 12
"""A frozen parameter this small is copied at every pass: a write first made after a warm-up
of calls is put back too (setups hunt 55: a temperature written from the 20th call on).
Not the trainable ones: a network's hundreds of biases and norms copied at every pass
cost timm EfficientNet and ConvNeXt runs 3-8% of their time (setups hunt 56)."""

_Kept = tuple[nn.Module, str, nn.Parameter, "Tensor | None", int]


def parameter_copies(model: nn.Module, every: bool = False) -> list[_Kept]:
    """``(owner, key, parameter, copy, version)`` of each parameter, a copy where kept.

    A ``forward`` may write its own parameters: a temperature annealed in place at every
    call (``nn.Parameter(..., requires_grad=False)``, by ``.data`` or re-assigned: setups
    hunts 54-55), a weight standardised in place; each monitor's pass then wrote it again
    and the run trained differently. Every parameter is copied at a model's first pass, up
    to ``KEPT_NUMEL`` elements in all, frozen ones first (beyond, each write is only said);
    then only those a pass was seen to write (``_WRITES``) and the small frozen ones: a
    model is not copied at every pass. ``every``: copied as at the first pass, where the
    user's hooks run in the pass (one may write a weight at any call: a pruning schedule's
    mask applied at its tenth call, setups hunt 69).
    """
    known, found = _WRITES.get(model), _parameters(model)
    if known is None or every:  # the first pass: frozen ones first into its room
        found.sort(key=lambda entry: entry[2].requires_grad)
    room, kept = (KEPT_NUMEL if known is None or every else 0), []
    for module, key, p in found:
        strided = p.layout == torch.strided  # a sparse one has no `==`: its version only
        small = not p.requires_grad and p.numel() <= SMALL_NUMEL
        keep = strided and (small or (known is not None and id(p) in known))
        if strided and p.numel() <= room:
            keep, room = True, room - p.numel()
        kept.append((module, key, p, p.detach().clone() if keep else None, p._version))
    return kept
    found = sorted(_parameters(model), key=lambda entry: entry[2].requires_grad)  # frozen first
    room, kept = KEPT_NUMEL, []
    for module, key, p in found:
        strided = p.layout == torch.strided  # a sparse one has no `==`: its version only
        keep = strided and not p.requires_grad and p.numel() <= SMALL_NUMEL
        if strided and p.numel() <= room:
            keep, room = True, room - p.numel()
        kept.append((module, key, p, p.detach().clone() if keep else None, p._version))
    return kept


def _parameters(model: nn.Module) -> list[tuple[nn.Module, str, nn.Parameter]]:
    """``(owner, key, parameter)`` of each parameter once (not TorchScript's, not lazy)."""
    seen: set[int] = set()
    found = []
    for module in model.modules():
        params = module._parameters
        if not isinstance(params, dict):  # TorchScript's wrapper: no Python forward
            continue
        for key, p in params.items():
            if p is not None and id(p) not in seen and not isinstance(p, UninitializedParameter):
                seen.add(id(p))
                found.append((module, key, p))
    return found


def put_back_parameters(model: nn.Module, saved: list[_Kept]) -> None:
    """The parameters a pass wrote or replaced as they were; one not copied is said, once."""
    written = set()
    with torch.no_grad():
        for module, key, p, _, _ in saved:
            if module._parameters.get(key) is not p:  # re-assigned in `forward`
                module._parameters[key] = p
        # a write through `.data` moves no version counter: the copies compared, one host
        # read for all of them (a device sync each would stall a GPU at every pass)
        copied = [(p, copy) for _, _, p, copy, version in saved
                  if copy is not None and p._version == version]  # fmt: skip
        if copied and bool(torch.stack([_differs(p, c) for p, c in copied]).any()):
            changed = {id(p) for p, c in copied if _differs(p, c)}
        else:
            changed = set()
        for _, _, p, copy, version in saved:
            if copy is not None and (p._version != version or id(p) in changed):
                if p.shape == copy.shape:
                    p.copy_(copy)
                else:  # given other data of another shape (`.data = ...`)
                    p.data = copy
                written.add(id(p))
    before = _WRITES.get(model, set())
    for module, key, p, copy, version in saved:
        if copy is None and p._version != version and id(p) not in before:
            written.add(id(p))
            name = next((n for n, m in model.named_modules() if m is module), "")
            say(
                f"lightning-cnnviz: the model's parameter `{'.'.join(filter(None, (name, key)))}`"
                " was written in a monitor's pass, with no copy kept: training may differ from "
                "a run without the monitors from here on; later passes put it back"
            )
    _WRITES[model] = before | written


def _differs(a: Tensor, b: Tensor) -> Tensor:
    """Whether ``a`` holds other values than ``b``, on the device (NaN matching NaN: same)."""
    if a.shape != b.shape:
        return torch.ones((), dtype=torch.bool, device=a.device)
    same = a == b
    if a.is_floating_point() or a.is_complex():
        same |= a.isnan() & b.isnan()
    return ~same.all()
