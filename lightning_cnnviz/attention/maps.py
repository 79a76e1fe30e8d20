"""One probe pass -> every attention map the view draws (pure of Lightning).

``attention_sites`` sorts a model's attention modules (global vs Swin windows, and
the block each window attention sits in); ``attention_maps`` runs one forward
pass in probe mode with ``core.capture`` keeping each global attention module's
input and each Swin block's first-norm output, then recomputes the weights
(``attention.weights``) and returns per-head maps on the patch grid and the
rollout (``attention.rollout``) over the trailing run of global blocks of one
grid.

Example::

    >>> import timm, torch
    >>> from lightning_cnnviz.core.selection import named_layers
    >>> net = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2,
    ...                         embed_dim=32, num_heads=2, num_classes=3)
    >>> sites = attention_sites(named_layers(net), ["blocks.1.attn"])
    >>> heads, rolled = attention_maps(net, torch.randn(2, 3, 32, 32), sites)
    >>> tuple(heads["blocks.1.attn"].shape), tuple(rolled.shape)
    ((2, 2, 4, 4), (2, 4, 4))
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from lightning_cnnviz.attention.rollout import cls_attention, rollout
from lightning_cnnviz.attention.weights import (
    global_attention,
    is_window_attention,
    window_received,
)
from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.tokens import (
    Layout,
    block_norm,
    grid_layout,
    is_attention,
    prefix_tokens,
)

__all__ = ["Sites", "attention_maps", "attention_sites"]


@dataclass
class Sites:
    """The attention modules of a model, sorted for ``attention_maps``.

    Attributes:
        selected: the modules to draw per head, by name.
        global_: every global attention module (the rollout chain), by name.
        blocks: window attention name -> (its block, the block's first-norm name).
        modules: every module by name (to hook the norms).
    """

    selected: dict[str, nn.Module]
    global_: dict[str, nn.Module]
    blocks: dict[str, tuple[nn.Module, str]] = field(default_factory=dict)
    modules: Mapping[str, nn.Module] = field(default_factory=dict)


def attention_sites(available: Mapping[str, nn.Module], selected: Sequence[str]) -> Sites:
    """Sort ``available`` (``named_layers``) attention modules; ``selected`` are drawn per head."""
    chosen = {n: available[n] for n in selected}
    global_ = {n: m for n, m in available.items() if is_attention(m) and not is_window_attention(m)}
    blocks = {}
    for name, module in chosen.items():
        if is_window_attention(module):
            parent = name.rpartition(".")[0]
            blocks[name] = (available[parent], f"{parent}.{block_norm(available[parent])}")
    return Sites(chosen, global_, blocks, available)


def attention_maps(
    model: nn.Module, x: Tensor, sites: Sites, with_rollout: bool = True
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Per-head maps (B, heads, h, w) of the selected modules, and the rollout (B, h, w).

    A global module's map is its class token's attention to the patches (the mean
    over queries without a prefix token); a window module's map is the attention
    each token receives in its window. Modules whose tokens do not lie on the
    patch grid are left out; the rollout is ``None`` without global attention.
    """
    hooked = dict(sites.global_ if with_rollout else {})
    hooked |= {n: m for n, m in sites.selected.items() if n not in sites.blocks}
    hooked |= {norm: sites.modules[norm] for _, norm in sites.blocks.values()}
    with probe_mode(model), LayerCapture(hooked, inputs=True) as cap:
        model(x)
    image_hw, prefix, batch = (int(x.shape[-2]), int(x.shape[-1])), prefix_tokens(model), len(x)
    weights: dict[str, Tensor] = {}
    layouts: dict[str, Layout | None] = {}
    with probe_mode(model):
        for name, module in hooked.items():
            if name not in sites.global_ and name not in sites.selected:
                continue  # a Swin norm
            with contextlib.suppress(ValueError):  # not a token sequence (CoAtNet's 2-D attention)
                w = global_attention(module, cap.inputs[name], batch)
                layouts[name] = grid_layout((batch, w.shape[-1], 1), image_hw, prefix, batch=batch)
                weights[name] = w
        heads: dict[str, Tensor] = {}
        for name, module in sites.selected.items():
            layout = layouts.get(name)
            if name in sites.blocks:
                block, norm = sites.blocks[name]
                heads[name] = window_received(module, block, cap.outputs[norm])
            elif layout is not None:
                heads[name] = cls_attention(weights[name], layout.prefix, layout.hw)
    chain = _last_run([(weights[n], layouts[n]) for n in sites.global_ if n in weights])
    if not (with_rollout and chain):
        return heads, None
    last = next(n for n in reversed(sites.global_) if n in weights)
    layout = layouts[last]
    assert layout is not None
    return heads, rollout(chain, layout.prefix, layout.hw)


def _last_run(items: list[tuple[Tensor, Layout | None]]) -> list[Tensor]:
    """The trailing blocks whose weights share the last one's token count and grid (rollout)."""
    run: list[Tensor] = []
    for weights, layout in reversed(items):
        if layout is None or (run and weights.shape != run[0].shape):
            break
        run.insert(0, weights)
    return run
