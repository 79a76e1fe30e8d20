"""Resolve a ``layers`` selection (names, globs, type names, ``"auto"``) against a model.

Layer selection is data: a monitor stores the user's patterns and resolves them
against the real model in ``setup()``. Names are the ones ``named_modules()``
gives, with ``torch.compile``'s ``_orig_mod.`` prefix stripped.

The layer-type families (``CONV_TYPES`` and the others) are in ``layer_types.py``.

Example::

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3))
    >>> list(resolve_layers(net, "Conv2d"))
    ['0', '2']
    >>> list(resolve_layers(net, ["2", "1"]))
    ['1', '2']
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch._dynamo import OptimizedModule

from lightning_cnnviz.core.hook_guard import ConfigError
from lightning_cnnviz.core.layer_calls import in_weight_average

__all__ = [
    "AutoRule",
    "LayerNotFoundError",
    "LayerSpec",
    "NoAutoLayers",
    "clean_name",
    "evenly_spaced",
    "is_compiled",
    "named_layers",
    "of_type",
    "outside_compiled",
    "resolve_layers",
    "scripted_layers",
    "unwrap_model",
]

LayerSpec = str | Sequence[str]
# An "auto" rule maps (model, {name: module}) to the names it picks, in model order.
AutoRule = Callable[[nn.Module, dict[str, nn.Module]], list[str]]


_COMPILE_PREFIX = "_orig_mod."


class NoAutoLayers(ValueError):
    """``layers="auto"`` found nothing this monitor can watch (not the user's error)."""


# Wrappers that hold the real model as `.module` (by type: any module may own a `.module`).
_WRAPPERS = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the module that really runs: unwraps ``torch.compile`` and data-parallel wrappers.

    Only real wrappers are unwrapped (by type, not by attribute name): a model that keeps
    its network in ``self.module`` is its own model, and its ``forward`` must run.

    Example::

        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3))
        >>> unwrap_model(torch.compile(net)) is net
        True
        >>> holder = nn.Module()
        >>> holder.module = net
        >>> unwrap_model(holder) is holder
        True
    """
    while True:
        if isinstance(model, OptimizedModule):
            model = model._orig_mod
        elif isinstance(model, _WRAPPERS):
            model = model.module
        else:
            return model


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` or any submodule runs through ``torch.compile``.

    Covers ``trainer.fit(torch.compile(module))`` (Lightning unwraps it and keeps a
    ``_compiler_ctx``), compiled submodules (``self.net = torch.compile(net)``) and
    modules compiled in place (``net.compile()``).
    """
    if getattr(model, "_compiler_ctx", None) is not None:
        return True
    return any(
        hasattr(m, "_orig_mod") or getattr(m, "_compiled_call_impl", None) is not None
        for m in model.modules()
    )


def outside_compiled(model: nn.Module) -> dict[str, nn.Module]:
    """``model``'s modules, by name, that run outside every compiled graph.

    A hook on one of them is called in eager code and changes nothing a graph traced: the
    wrapper ``torch.compile(net)`` returns (not the ``net`` inside it), and a module whose
    ``forward`` Lightning compiled (``_compiler_ctx``) but none of its children. A module
    compiled in place (``net.compile()``) runs its hooks in the graph: left out.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
        >>> outer = nn.Sequential(torch.compile(net), nn.Flatten())
        >>> list(outside_compiled(outer))
        ['', '0', '1']
        >>> list(outside_compiled(nn.ModuleList([net, torch.compile(net)])))  # a twin handle
        ['', '1']

    By identity: ``named_modules`` lists a module held twice under its first name, so a
    net kept beside its compiled handle (``self.net_c = torch.compile(self.net)``) reads as
    outside by name while its hooks run in the graph (setups hunt 66: dynamo aborted the
    fit at step 0, "already tracked for mutation").
    """
    inside: set[int] = set()  # by identity: a module held under a second name is the same
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            inside.update(id(m) for m in module.modules())
        elif hasattr(module, "_orig_mod"):
            inside.update(id(m) for m in module._orig_mod.modules())
        elif getattr(module, "_compiler_ctx", None) is not None:
            inside.update(id(m) for m in module.modules() if m is not module)
    return {name: m for name, m in model.named_modules() if id(m) not in inside}


def clean_name(name: str) -> str:
    """Strip every ``_orig_mod.`` segment that ``torch.compile`` inserts into module names."""
    return name.replace(_COMPILE_PREFIX, "").removeprefix("_orig_mod")


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """All submodules by clean name, in model order, the root excluded.

    A module registered under two names (shared) keeps its first name, so that it
    is hooked once; its call sites are told apart by the capture (``#0``, ``#1``).
    Scripted modules (``torch.jit.script``) and what they hold are left out: they take no
    hooks (``scripted_layers`` names them).
    """
    layers: dict[str, nn.Module] = {}
    seen: set[int] = set()
    scripted = scripted_layers(model)
    for name, module in model.named_modules(remove_duplicate=False):
        name = clean_name(name)
        if not name or id(module) in seen or _inside(name, scripted):
            continue
        seen.add(id(module))
        layers[name] = module
    return layers


def scripted_layers(model: nn.Module) -> list[str]:
    """The outermost scripted (``torch.jit.script``) submodules of ``model``, by name.

    Example::

        >>> net = nn.Sequential(torch.jit.script(nn.Conv2d(1, 2, 3)), nn.ReLU())
        >>> scripted_layers(net), list(named_layers(net))
        (['0'], ['1'])
    """
    found: list[str] = []
    for name, module in model.named_modules():
        name = clean_name(name)
        if name and isinstance(module, torch.jit.ScriptModule) and not _inside(name, found):
            found.append(name)
    return found


def _inside(name: str, roots: Sequence[str]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def _matches(pattern: str, name: str, module: nn.Module) -> bool:
    # a type name matches its subclasses too: `parametrize` makes a conv a ParametrizedConv2d
    if pattern == name or any(c.__name__ == pattern for c in type(module).__mro__):
        return True
    return any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(name, pattern)


class LayerNotFoundError(ConfigError):
    """A ``layers`` pattern matches no module of the model (a configuration mistake)."""


def resolve_layers(
    model: nn.Module,
    layers: LayerSpec,
    auto: AutoRule | None = None,
    owner: str = "",
) -> dict[str, nn.Module]:
    """Resolve ``layers`` to ``{name: module}`` in model order.

    Args:
        model: the model (compiled or wrapped models are unwrapped).
        layers: ``"auto"``, one pattern, or a list of patterns; a pattern is an
            exact module name (``"conv1"``), a glob (``"features.*"``) or a
            module type name (``"Conv2d"``, which matches its subclasses too).
        auto: the monitor's rule for ``"auto"``.
        owner: who asks (a monitor's name), to begin an error message with.

    Raises:
        LayerNotFoundError: a pattern matches nothing (the message suggests the
            closest names and lists the available ones).
        NoAutoLayers: ``"auto"`` found nothing (a monitor steps aside on it).
        ConfigError: ``"auto"`` was asked for with no rule, or an empty list (a
            ``ValueError`` raised through a monitor's guarded hooks, ``core.hook_guard``).

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
        >>> try:
        ...     resolve_layers(net, "conv*")
        ... except LayerNotFoundError as err:
        ...     print(err)
        `layers` pattern 'conv*' matches no module. Available: '0' (Conv2d), '1' (ReLU)
        >>> named = nn.Sequential()
        >>> named.add_module("conv1", nn.Conv2d(1, 2, 3))
        >>> try:
        ...     resolve_layers(named, "cnv1", owner="M")
        ... except LayerNotFoundError as err:
        ...     print(str(err).split(" Available")[0])
        M: `layers` pattern 'cnv1' matches no module; did you mean 'conv1'?
    """
    available = named_layers(unwrap_model(model))
    patterns = [layers] if isinstance(layers, str) else list(layers)
    if not patterns:
        raise ConfigError("`layers` must name at least one pattern, got an empty list")
    picked: set[str] = set()
    for pattern in patterns:
        if pattern == "auto":
            if auto is None:
                raise ConfigError("`layers='auto'` is not supported by this monitor")
            # not a weight average's copy kept on the model (setups hunt 58: an EMA copy's
            # ReLUs picked, then told "not called by forward(), e.g. a GAN's generator")
            own = {
                n: m for n, m in available.items() if not in_weight_average(unwrap_model(model), n)
            }
            found = auto(unwrap_model(model), own or available)
            if not found:
                raise NoAutoLayers(
                    f"`layers='auto'` found no suitable module. Available: {_listing(available)}"
                )
        else:
            found = [n for n, m in available.items() if _matches(pattern, n, m)]
            if not found:
                close = difflib.get_close_matches(pattern, list(available), n=3, cutoff=0.5)
                hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
                raise LayerNotFoundError(
                    f"{owner + ': ' if owner else ''}`layers` pattern {pattern!r} matches no "
                    f"module{hint} Available: {_listing(available)}"
                )
        picked.update(found)
    return {name: module for name, module in available.items() if name in picked}


def _listing(available: dict[str, nn.Module], limit: int = 60) -> str:
    items = [f"{n!r} ({type(m).__name__})" for n, m in available.items()]
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def of_type(*types: type[nn.Module]) -> AutoRule:
    """An ``auto`` rule that picks every module of the given types.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
        >>> of_type(nn.ReLU)(net, named_layers(net))
        ['1']
    """

    def rule(model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        return [n for n, m in available.items() if isinstance(m, types)]

    return rule


def evenly_spaced(names: list[str], count: int | None, single: str = "last") -> list[str]:
    """At most ``count`` of ``names``, evenly spread, the first and the last included.

    With ``count == 1`` the ``single`` one (``"first"`` or ``"last"``) is kept.

    Example::

        >>> evenly_spaced(list("abcdefg"), 3), evenly_spaced(list("ab"), 3)
        (['a', 'd', 'g'], ['a', 'b'])
        >>> evenly_spaced(list("abc"), 1), evenly_spaced(list("abc"), 1, single="first")
        (['c'], ['a'])
    """
    if count is None or len(names) <= count:
        return names
    if count == 1:
        return names[:1] if single == "first" else names[-1:]
    step = (len(names) - 1) / (count - 1)
    return [names[round(i * step)] for i in range(count)]
