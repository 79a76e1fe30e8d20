"""Reading a model without changing it: parametrizations held still, buffers put back.

Two things change a model merely by reading it or passing images through it, in eval
mode as well: a parametrized weight recomputes itself on every access, and
``spectral_norm``'s parametrization runs a power-iteration step (updating its ``_u`` /
``_v`` buffers) on each access in training mode; quantization-aware training's observers
(``FakeQuantize``) update their statistics on every forward, whatever the mode. Either
way the next training step differs from the one a run without monitors takes.
``kept_state`` wraps every event and probe pass: parametrizations in eval mode for its
duration, and afterwards each buffer and each module's own attributes as they were,
inside too: a random generator the model holds (test-time noise drawn in eval mode), a
list a ``forward`` appends to, a tensor attribute updated in place, a counter in a
``SimpleNamespace`` or dataclass (setups hunt 23: each trained differently; those are
put back by ``core.attribute_state``). The leaves behind a (parametrized) weight, whose
``.grad`` training fills, are ``core.weight_leaves``'s.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from torch.nn.utils.parametrizations import spectral_norm
    >>> conv = spectral_norm(nn.Conv2d(1, 2, 3))
    >>> u = conv.parametrizations.weight[0]._u.clone()
    >>> with kept_state(conv):
    ...     _ = conv.weight  # training mode: a power-iteration step, undone
    >>> torch.equal(conv.parametrizations.weight[0]._u, u), conv.training
    (True, True)
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lightning_cnnviz.core.attribute_state import KEPT_NUMEL, attributes_as_now
from lightning_cnnviz.core.generators import (
    class_generators,
    generator_state,
    global_rng_kept,
    set_generator_state,
)
from lightning_cnnviz.core.hook_state import callables_as_now, user_callables, user_code
from lightning_cnnviz.core.inputs import model_device
from lightning_cnnviz.core.kept_parameters import parameter_copies, put_back_parameters
from lightning_cnnviz.core.say import say

__all__ = [
    "KEPT_NUMEL",
    "backward_hooks_aside",
    "buffers_rewound",
    "kept_state",
]

_KEEPING: set[int] = set()  # models inside a ``kept_state`` now: a nested one is a no-op


@contextlib.contextmanager
def kept_state(model: nn.Module) -> Iterator[None]:
    """Parametrizations in eval mode inside; buffers, attributes and random streams kept.

    On leaving, every buffer and every attribute a module holds of its own (not torch's or
    Lightning's) is as it was, and so are the parameters a pass writes or replaces
    (``core.kept_parameters``), the generators the modules' classes hold, the global generators
    (``global_rng_kept``), the modules' hooks (``_hooks_as_now``) and the state their
    callables hold (``core.hook_state.callables_as_now``).
    Re-entrant: a probe pass inside an event keeps nothing twice (the outer one restores).
    """
    if id(model) in _KEEPING:
        yield
        return
    lists = [m for m in model.modules() if isinstance(m, parametrize.ParametrizationList)]
    flags = [(m, m.training) for p in lists for m in p.modules()]
    saved = _buffer_copies(model)
    large = _large_buffers(model)
    callables = [h for held in _hook_dicts(model) for h in held.values() if callable(h)]
    params = parameter_copies(model, every=user_code(callables))
    shared = [(g, generator_state(g)) for g in class_generators(model.modules())]
    attributes = [attributes_as_now(m) for m in model.modules()]
    hooks = _hooks_as_now(model)
    held = callables_as_now(user_callables(callables))
    device = model_device(model)
    _KEEPING.add(id(model))
    try:
        for p in lists:
            p.eval()
        # a weight read draws where its parametrization follows another module's flag
        # (DropConnect keyed to the conv's `training`) or none (weight noise)
        with global_rng_kept([device] if device.type == "cuda" else []):
            yield
    finally:
        _KEEPING.discard(id(model))
        for module, flag in flags:
            module.training = flag
        _put_back_buffers(saved)
        put_back_parameters(model, params)
        for generator, state in shared:
            set_generator_state(generator, state)
        for put in attributes:
            put()
        hooks()
        held()
        _say_written(model, large)


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called")  # fmt: skip
_TENSOR_HOOKS = ("_backward_hooks", "_post_accumulate_grad_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks", "_global_forward_hooks_with_kwargs",
                 "_global_forward_hooks_always_called")  # fmt: skip


def _hook_dicts(model: nn.Module) -> list[dict]:
    """The hook dicts of ``model``'s modules and torch's global ones."""
    from torch.nn.modules import module as torch_module

    dicts = [getattr(m, name, None) for m in model.modules() for name in _HOOK_DICTS]
    dicts += [getattr(torch_module, name, None) for name in _GLOBAL_HOOKS]
    return [hooks for hooks in dicts if isinstance(hooks, dict)]


def _hooks_as_now(model: nn.Module) -> Callable[[], None]:
    """What removes the hooks registered since on ``model``'s modules, parameters or globally.

    A ``forward`` that registers a hook once (``if self.h is None: self.h =
    head.register_full_backward_pre_hook(...)``) registers it again in every probe pass,
    its attribute put back to ``None`` (setups hunt 37: three hooks where the run had one,
    gradients scaled 0.1 cubed; setups hunt 38: the same with a parameter's hook or a
    global one). The monitors remove their own hooks before this runs.
    """
    held = [(hooks, set(hooks)) for hooks in _hook_dicts(model)]
    # a parameter's hook dict is None until its first hook
    tensors = [
        (p, name, getattr(p, name, None)) for p in model.parameters() for name in _TENSOR_HOOKS
    ]
    held += [(hooks, set(hooks)) for _, _, hooks in tensors if isinstance(hooks, dict)]

    def put() -> None:
        for hooks, keys in held:
            for key in [k for k in hooks if k not in keys]:
                del hooks[key]
        for p, name, hooks in tensors:
            if hooks is None and getattr(p, name, None):
                setattr(p, name, None)  # every hook on it came since

    return put


@contextlib.contextmanager
def backward_hooks_aside(model: nn.Module) -> Iterator[None]:
    """The run's own module backward hooks (``model``'s and global ones) out of a probe's way.

    A probe's ``torch.autograd.grad`` (Grad-CAM, an attack, activation maximisation)
    would call them: a hook counting its calls, or changing the gradient by them, would
    then train differently (setups hunt 36: a global hook warming gradients up by its call
    count saw 29 calls instead of 12). Hooks registered inside (Captum's) are kept apart
    and go with the probe. Hooks on tensors (``register_hook`` in ``forward``) are not
    reached: ``in_probe_pass()`` tells them.

    Example::

        >>> net = nn.Linear(2, 1)
        >>> calls = []
        >>> handle = net.register_full_backward_hook(lambda *a: calls.append(1))
        >>> x = torch.ones(1, 2, requires_grad=True)
        >>> with backward_hooks_aside(net):
        ...     _ = torch.autograd.grad(net(x).sum(), x)
        >>> _ = torch.autograd.grad(net(x).sum(), x)
        >>> len(calls), len(net._backward_hooks)
        (1, 1)
    """
    from torch.nn.modules import module as torch_module

    modules = list(model.modules())
    own = [(m, m._backward_hooks, m._backward_pre_hooks) for m in modules]
    names = ("_global_backward_hooks", "_global_backward_pre_hooks")
    shared = [getattr(torch_module, name) for name in names]
    try:
        for m, hooks, pre_hooks in own:
            m._backward_hooks, m._backward_pre_hooks = type(hooks)(), type(pre_hooks)()
        for name, hooks in zip(names, shared, strict=True):
            setattr(torch_module, name, type(hooks)())
        yield
    finally:
        for m, hooks, pre_hooks in own:
            m._backward_hooks, m._backward_pre_hooks = hooks, pre_hooks
        for name, hooks in zip(names, shared, strict=True):
            setattr(torch_module, name, hooks)


@contextlib.contextmanager
def buffers_rewound(model: nn.Module) -> Iterator[None]:
    """Every buffer as it was on leaving, also inside a ``kept_state`` (which restores once).

    Two passes compared inside one probe pass: quantization observers moved by the first
    must not make the second differ.

    Example::

        >>> bn = nn.BatchNorm1d(2)
        >>> with buffers_rewound(bn):
        ...     _ = bn(torch.randn(4, 2))  # training mode: the running statistics move
        >>> bn.running_mean.tolist(), int(bn.num_batches_tracked)
        ([0.0, 0.0], 0)
    """
    saved = _buffer_copies(model)
    try:
        yield
    finally:
        _put_back_buffers(saved)


def _buffer_copies(model: nn.Module) -> list[tuple[nn.Module, str, Tensor, Tensor]]:
    return [
        (module, name, buffer, buffer.detach().clone())
        for module in model.modules()
        for name, buffer in module._buffers.items()
        if isinstance(buffer, Tensor)
        and not nn.parameter.is_lazy(buffer)  # made at the first forward: nothing to keep
        and buffer.numel() <= KEPT_NUMEL
    ]


def _large_buffers(model: nn.Module) -> list[tuple[str, Tensor, int]]:
    """The buffers too large to copy, with their version counters (in-place writes)."""
    return [
        (name, buffer, buffer._version)
        for name, buffer in model.named_buffers()
        if not nn.parameter.is_lazy(buffer) and buffer.numel() > KEPT_NUMEL
    ]


_SAID: dict[int, weakref.ref[Tensor]] = {}  # large buffers said to be written, by id


def _say_written(model: nn.Module, large: list[tuple[str, Tensor, int]]) -> None:
    for name, buffer, version in large:
        said = _SAID.get(id(buffer))
        if buffer._version != version and (said is None or said() is not buffer):
            _SAID[id(buffer)] = weakref.ref(buffer)
            say(
                f"lightning-cnnviz: the model's buffer `{name}` ({buffer.numel()} elements, "
                f"too large to keep a copy of) was written in a monitor's pass: training may "
                "differ from a run without the monitors"
            )


def _put_back_buffers(saved: list[tuple[nn.Module, str, Tensor, Tensor]]) -> None:
    with torch.no_grad():
        for module, name, buffer, copy in saved:
            module._buffers[name] = buffer  # the same tensor: optimisers, DDP hold it
            if buffer.shape != copy.shape:  # grown in place by a pass (a per-channel
                buffer.resize_(copy.shape)  # quantization observer's empty min/max)
            buffer.copy_(copy)
