"""Which layers the feature-map view draws, and how conv blocks line up in a forward pass.

Nothing here knows about Lightning. ``auto_layers`` picks every conv and pooling
module whose maps have more than one position and every transformer block, evenly
thinned to a cap;
``stage_kind`` and ``stage_pairs`` find, for each conv call site, the activation and
pooling that follow it (the ``stages`` picture: conv -> activation -> pooling).

Example::

    >>> from torch import nn
    >>> [stage_kind(m) for m in (nn.Conv2d(1, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())]
    ['conv', 'act', 'pool', None]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from torch import nn

from lightning_cnnviz.core.layer_types import ACTIVATION_TYPES, CONV_TYPES, POOL_TYPES
from lightning_cnnviz.core.map_places import has_places
from lightning_cnnviz.core.selection import evenly_spaced, of_type
from lightning_cnnviz.core.tokens import transformer_blocks

__all__ = ["POOL_2D", "auto_layers", "candidates", "stage_kind", "stage_pairs"]

POOL_2D = tuple(t for t in POOL_TYPES if t.__name__.endswith("2d"))
_POOLS = (*POOL_TYPES, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.AdaptiveAvgPool3d,
          nn.AdaptiveMaxPool3d)  # fmt: skip


def candidates(model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
    """Every conv (1-D, 2-D, 3-D), pooling module and transformer block, in model order."""
    maps = set(of_type(*CONV_TYPES, *_POOLS)(model, available))
    blocks = set(transformer_blocks(available))
    return [n for n in available if n in maps or n in blocks]


def auto_layers(
    model: nn.Module,
    available: dict[str, nn.Module],
    max_layers: int,
    shapes: dict[str, tuple[int, ...]] | None = None,
    ndim: int = 4,
) -> list[str]:
    """Conv and pooling modules with maps above one position, and transformer blocks, thinned.

    ``shapes`` (each module's output shape in a traced pass) drops maps of 1 position
    (a global pool, a squeeze-excitation conv) and those not shaped like the input
    (``ndim``); without it every candidate counts. A transformer block
    (``core.tokens.transformer_blocks``) outputs tokens, which the callback lays on the
    patch grid, so its shape is not checked here. Evenly thinned to ``max_layers``.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3))
        >>> auto_layers(net, dict(net.named_children()), 2)
        ['0', '3']
        >>> auto_layers(net, dict(net.named_children()), 6, {"0": (1, 2, 6, 6), "2": (1, 2, 3, 3),
        ...                                                   "3": (1, 2, 1, 1)})
        ['0', '2']
    """
    names = candidates(model, available)
    if shapes is not None:
        blocks = set(transformer_blocks(available))
        names = [
            n for n in names
            if n in blocks
            or (n in shapes and len(shapes[n]) == ndim and has_places(shapes[n]))
        ]  # fmt: skip
    return evenly_spaced(names, max_layers)


def stage_kind(module: nn.Module) -> str | None:
    """``"conv"``, ``"act"``, ``"pool"`` or ``None``: the module's part in a conv block."""
    if isinstance(module, CONV_TYPES):
        return "conv"
    if isinstance(module, ACTIVATION_TYPES):
        return "act"
    return "pool" if isinstance(module, _POOLS) else None


def stage_pairs(trace: Sequence[tuple[str, str]]) -> dict[str, tuple[str | None, str | None]]:
    """For each conv call site, the activation and pooling sites that follow it.

    ``trace`` lists ``(module name, kind)`` in the order the modules ran in one
    forward pass; a module that runs twice gets per-call-site names (``act#0``,
    ``act#1``). Only the first activation and the first pooling before the next
    conv belong to a conv (a BatchNorm in between does not matter).

    Example::

        >>> trace = [("c1", "conv"), ("act", "act"), ("p", "pool"), ("c2", "conv"),
        ...          ("act", "act"), ("p", "pool"), ("c3", "conv")]
        >>> stage_pairs(trace)
        {'c1': ('act#0', 'p#0'), 'c2': ('act#1', 'p#1'), 'c3': (None, None)}
    """
    calls = Counter(name for name, _ in trace)
    seen: Counter[str] = Counter()
    pairs: dict[str, tuple[str | None, str | None]] = {}
    current: str | None = None
    for name, kind in trace:
        site = f"{name}#{seen[name]}" if calls[name] > 1 else name
        seen[name] += 1
        if kind == "conv":
            current = site
            pairs[site] = (None, None)
        elif current is not None:
            act, pool = pairs[current]
            if kind == "act" and act is None and pool is None:
                pairs[current] = (site, None)
            elif kind == "pool" and pool is None:
                pairs[current] = (act, site)
                current = None  # the block ends with its pooling
    return pairs
