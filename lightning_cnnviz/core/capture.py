"""Where hooks are registered (with ``probe_pass.py``'s one for item-taking models).

What one probe pass tells of how the layers are called is ``layer_calls.py``.

``LayerCapture`` attaches forward hooks to selected modules for the duration of a
``with`` block and removes every handle in ``finally``; the probe pass it runs in
(``probe_pass.probe_mode``) puts the model in eval mode and restores each module's own
``training`` flag afterwards, so a probe never changes how training continues.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from lightning_cnnviz.core.probe_pass import probe_mode
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True))
    >>> with probe_mode(net), LayerCapture({"0": net[0], "1": net[1]}) as cap:
    ...     _ = net(torch.randn(1, 1, 5, 5))
    >>> sorted(cap.outputs), tuple(cap.outputs["0"].shape)
    (['0', '1'], (1, 2, 3, 3))
    >>> len(net[0]._forward_hooks)
    0
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from lightning_cnnviz.core.own_hooks import own_hook

__all__ = [
    "LayerCapture",
    "OutputFn",
    "first_tensor",
    "hook_count",
    "module_name",
    "not_a_forward",
    "site_name",
    "tap_forward",
    "under_transform",
]

# Called with (site name, module output) for every call of a hooked module.
OutputFn = Callable[[str, Tensor], None]


def first_tensor(output: Any, key: str | int | None = None) -> Tensor:
    """The tensor a module or model returned: itself, ``output[key]``, or the first tensor found.

    Handles tuples, lists, namedtuples and dicts (e.g. a model returning
    ``(logits, aux)`` in training, or ``{"logits": ...}``).

    Example::

        >>> first_tensor((torch.zeros(2), torch.ones(3))).shape
        torch.Size([2])
        >>> first_tensor({"aux": torch.zeros(1), "logits": torch.ones(4)}, "logits").shape
        torch.Size([4])
        >>> first_tensor((torch.zeros(2), torch.ones(3)), "1").shape  # a key from a command line
        torch.Size([3])
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Distribution):
        return _distribution_scores(output)
    if key is not None:
        if isinstance(key, str) and hasattr(output, key) and not isinstance(output, Mapping):
            return first_tensor(getattr(output, key))
        if isinstance(key, str) and key.isdigit() and isinstance(output, list | tuple):
            key = int(key)  # "0" from a command line, for a tuple output
        return first_tensor(output[key])
    values = output.values() if isinstance(output, Mapping) else output
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        values = [getattr(output, f.name) for f in dataclasses.fields(output)]
    if isinstance(values, Collection) and not isinstance(values, str | bytes):
        for value in values:
            with contextlib.suppress(TypeError):
                return first_tensor(value)
    raise TypeError(f"expected a tensor (or a tuple/dict holding one), got {type(output).__name__}")


def _distribution_scores(output: Distribution) -> Tensor:
    """The scores a ``torch.distributions`` output holds: its ``logits`` (log-probabilities).

    A policy or probabilistic head returning ``Categorical(logits=...)`` (setups hunt 26:
    two monitors stepped aside on "expected a tensor ..., got Categorical"). A distribution
    without logits (``Normal``) holds no class scores: said.

    Example::

        >>> from torch.distributions import Categorical
        >>> first_tensor(Categorical(logits=torch.tensor([[0.0, 2.0]]))).argmax(1).tolist()
        [1]
    """
    logits = getattr(type(output), "logits", None)
    if logits is not None:  # a lazy property where the distribution was made from probs
        return output.logits
    raise TypeError(
        f"the model returns a {type(output).__name__} distribution, which holds no class "
        "scores (`logits`): return the scores, or a distribution made of them (`Categorical`)"
    )


def site_name(name: str, call_index: int, shared: Collection[str] = ()) -> str:
    """Name of one call site: ``conv1``, or ``relu#0``/``relu#1`` for a module called twice.

    Example::

        >>> site_name("relu", 1, shared={"relu"}), module_name("relu#1"), module_name("conv1")
        ('relu#1', 'relu', 'conv1')
    """
    return f"{name}#{call_index}" if name in shared else name


def module_name(site: str, names: Collection[str] = ()) -> str:
    """The module name of a call site (``relu#1`` -> ``relu``); the inverse of ``site_name``.

    ``names``: the modules' names, where one may hold a ``#`` of its own (a ``ModuleDict``
    key ``"conv#0"``): a site that is one of them is that module.

    Example::

        >>> module_name("blocks.conv#0#1"), module_name("blocks.conv#0", {"blocks.conv#0"})
        ('blocks.conv#0', 'blocks.conv#0')
    """
    if site in names:
        return site
    name, _, index = site.rpartition("#")
    return name if name and index.isdigit() else site


def hook_count(model: nn.Module) -> dict[str, int]:
    """Number of forward (pre-)hooks and backward hooks on every module (for leak checks)."""
    return {
        name: len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for name, m in model.named_modules()
    }


class LayerCapture:
    """Record what selected layers output while the ``with`` block runs.

    Every kept tensor is detached and cloned (an in-place activation after the
    layer would otherwise rewrite it) and, by default, cast to float32 so that
    statistics are exact under autocast. With ``on_output`` the outputs are
    handed to the function instead of kept (for reductions that must not hold
    whole activations). Handles are removed in ``__exit__``, also after an
    exception, and ``remove()`` is safe to call twice.

    Args:
        layers: ``{name: module}`` to hook (e.g. from ``resolve_layers``).
        shared: names of modules called more than once per forward pass; their
            records are named per call site, ``name#0``, ``name#1``, ...
        inputs: also record each layer's first positional input.
        on_output: if given, called as ``on_output(site, output)`` instead of keeping outputs.
        float32: cast recorded tensors to float32.
    """

    def __init__(
        self,
        layers: Mapping[str, nn.Module],
        *,
        shared: Collection[str] = (),
        inputs: bool = False,
        on_output: OutputFn | None = None,
        float32: bool = True,
    ) -> None:
        self.layers = dict(layers)
        self.shared = set(shared)
        self.record_inputs = inputs
        self.on_output = on_output
        self.not_single: set[str] = set()  # sites whose output was no single tensor
        self.float32 = float32
        self.outputs: dict[str, Tensor] = {}
        self.inputs: dict[str, Tensor] = {}
        self._calls: dict[str, int] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _keep(self, tensor: Tensor) -> Tensor:
        tensor = tensor.detach()
        if self.float32 and tensor.is_floating_point():
            return tensor.float() if tensor.dtype != torch.float32 else tensor.clone()
        return tensor.clone()

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not_a_forward(output):
                return
            out = first_tensor(output)
            index = self._calls.get(name, 0)
            self._calls[name] = index + 1
            site = site_name(name, index, self.shared)
            if not isinstance(output, Tensor):  # a list of maps (a feature pyramid), a tuple
                self.not_single.add(site)
            if self.on_output is not None:
                self.on_output(site, out)
            else:
                self.outputs[site] = self._keep(out)
            if self.record_inputs and args and isinstance(args[0], Tensor):
                self.inputs[site] = self._keep(args[0])

        return hook

    @property
    def call_counts(self) -> dict[str, int]:
        """How often each hooked module ran inside the block."""
        return dict(self._calls)

    def __enter__(self) -> LayerCapture:
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(own_hook(self._hook(name))))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook this capture registered (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def tap_forward(
    module: nn.Module, fn: Callable[[tuple[Any, ...], Any], None]
) -> torch.utils.hooks.RemovableHandle:
    """Call ``fn(args, output)`` after every forward of ``module``, until the handle is removed.

    For a hook that must outlive one ``with`` block (e.g. across a validation loop):
    the caller removes the handle in its own ``finally`` / end hook.

    Example::

        >>> seen = []
        >>> net = nn.Linear(2, 3)
        >>> handle = tap_forward(net, lambda args, out: seen.append(tuple(out.shape)))
        >>> _ = net(torch.zeros(4, 2)); handle.remove(); _ = net(torch.zeros(1, 2))
        >>> seen, len(net._forward_hooks)
        ([(4, 3)], 0)
    """

    def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not not_a_forward(output):
            fn(args, output)

    return module.register_forward_hook(own_hook(hook))


def not_a_forward(output: Any) -> bool:
    """Whether a module's call is no forward pass of the run: a hook skips it.

    A pass under a ``torch.func`` transform (``under_transform``), or a block recomputed
    during a backward pass: activation checkpointing (``torch.utils.checkpoint``, timm's
    ``set_grad_checkpointing``) runs it again there, which would count every call twice
    (setups hunt 29: the call lists of a traced pass fell out of step, an IndexError).

    Example::

        >>> not_a_forward(torch.ones(2))
        False
    """
    return under_transform(output) or torch._C._current_graph_task_id() != -1


def under_transform(output: Any) -> bool:
    """Whether a module's ``output`` comes from a pass under a ``torch.func`` transform.

    A pass under vmap or grad (per-sample gradients in a ``training_step``) hands hooks
    wrapped tensors whose values cannot be read: the taps on the run's own passes skip it.

    Example::

        >>> under_transform(torch.ones(2)), under_transform(None)
        (False, False)
        >>> bool(torch.func.vmap(lambda x: torch.tensor(under_transform(x)))(torch.ones(3, 2))[0])
        True
    """
    try:
        tensor = first_tensor(output)
    except TypeError:  # no tensor in it: nothing a transform wrapped
        return False
    return torch._C._functorch.is_functorch_wrapped_tensor(tensor)
