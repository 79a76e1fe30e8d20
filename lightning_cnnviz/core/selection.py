"""Resolve a ``layers`` selection (names, globs, type names, ``"auto"``) against a model.

Layer selection is data: a monitor stores the user's patterns and resolves them
against the real model in ``setup()``. Names are the ones ``named_modules()``
gives, with ``torch.compile``'s ``_orig_mod.`` prefix stripped.

Example::

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3))
    >>> list(resolve_layers(net, "Conv2d"))
    ['0', '2']
    >>> list(resolve_layers(net, ["2", "1"]))
    ['1', '2']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

from torch import nn
from torch._dynamo import OptimizedModule

__all__ = [
    "ACTIVATION_TYPES",
    "CONV_TYPES",
    "POOL_TYPES",
    "AutoRule",
    "LayerSpec",
    "NoAutoLayers",
    "NoMatch",
    "clean_name",
    "evenly_spaced",
    "is_compiled",
    "named_layers",
    "of_type",
    "resolve_layers",
    "unwrap_model",
]

LayerSpec = str | Sequence[str]
# An "auto" rule maps (model, {name: module}) to the names it picks, in model order.
AutoRule = Callable[[nn.Module, dict[str, nn.Module]], list[str]]

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Sigmoid,
    nn.Tanh,
)

_COMPILE_PREFIX = "_orig_mod."


class NoMatch(ValueError):
    """A ``layers`` pattern matches no module: the user's error, always raised."""


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
    ``_compiler_ctx``) and compiled submodules (``self.net = torch.compile(net)``).
    """
    if getattr(model, "_compiler_ctx", None) is not None:
        return True
    return any(hasattr(m, "_orig_mod") for m in model.modules())


def clean_name(name: str) -> str:
    """Strip every ``_orig_mod.`` segment that ``torch.compile`` inserts into module names."""
    return name.replace(_COMPILE_PREFIX, "").removeprefix("_orig_mod")


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """All submodules by clean name, in model order, the root excluded.

    A module registered under two names (shared) keeps its first name, so that it
    is hooked once; its call sites are told apart by the capture (``#0``, ``#1``).
    """
    layers: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for name, module in model.named_modules(remove_duplicate=False):
        name = clean_name(name)
        if not name or id(module) in seen:
            continue
        seen.add(id(module))
        layers[name] = module
    return layers


def _matches(pattern: str, name: str, module: nn.Module) -> bool:
    if pattern == name or type(module).__name__ == pattern:
        return True
    return any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(name, pattern)


def resolve_layers(
    model: nn.Module,
    layers: LayerSpec,
    auto: AutoRule | None = None,
) -> dict[str, nn.Module]:
    """Resolve ``layers`` to ``{name: module}`` in model order.

    Args:
        model: the model (compiled or wrapped models are unwrapped).
        layers: ``"auto"``, one pattern, or a list of patterns; a pattern is an
            exact module name (``"conv1"``), a glob (``"features.*"``) or a
            module type name (``"Conv2d"``).
        auto: the monitor's rule for ``"auto"``.

    Raises:
        NoMatch: a pattern matches nothing (the message lists the available names).
        NoAutoLayers: ``"auto"`` found nothing (a monitor steps aside on it).
        ValueError: ``"auto"`` was asked for with no rule, or an empty list.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
        >>> resolve_layers(net, "conv*")
        Traceback (most recent call last):
        ...
        lightning_cnnviz.core.selection.NoMatch: `layers` pattern 'conv*' matches no module. ...
    """
    available = named_layers(unwrap_model(model))
    patterns = [layers] if isinstance(layers, str) else list(layers)
    if not patterns:
        raise ValueError("`layers` must name at least one pattern, got an empty list")
    picked: set[str] = set()
    for pattern in patterns:
        if pattern == "auto":
            if auto is None:
                raise ValueError("`layers='auto'` is not supported by this monitor")
            found = auto(unwrap_model(model), available)
            if not found:
                raise NoAutoLayers(
                    f"`layers='auto'` found no suitable module. Available: {_listing(available)}"
                )
        else:
            found = [n for n, m in available.items() if _matches(pattern, n, m)]
            if not found:
                raise NoMatch(
                    f"`layers` pattern {pattern!r} matches no module. "
                    f"Available: {_listing(available)}"
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
