"""Class-token attention maps and attention rollout (Abnar & Zuidema 2020).

Nothing here knows about Lightning. ``cls_attention`` reads, per head, how much
the class token attends to each patch (the mean over all queries when the model
has no prefix token); ``rollout`` follows attention through the blocks: each
block's head-averaged weights plus the identity (the residual connection),
rows renormalised, multiplied from the first block to the last; its class-token
row over the patches is the map. ``entropy`` is the normalised entropy of such a
map (1: uniform, 0: on one patch).

Example::

    >>> import torch
    >>> uniform = torch.full((1, 2, 5, 5), 0.2)  # 1 image, 2 heads, 1 class token + 2x2 patches
    >>> cls_attention(uniform, prefix=1, hw=(2, 2)).shape
    torch.Size([1, 2, 2, 2])
    >>> float(entropy(rollout([uniform, uniform], prefix=1, hw=(2, 2)))[0])
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["cls_attention", "entropy", "rollout"]


def _patch_rows(weights: Tensor, prefix: int) -> Tensor:
    """(..., L, L) -> (..., P): the class token's row, or the mean row without a prefix."""
    rows = weights[..., 0, :] if prefix > 0 else weights.mean(-2)
    return rows[..., prefix:]


def cls_attention(weights: Tensor, prefix: int, hw: tuple[int, int]) -> Tensor:
    """Per-head class-token attention to the patches: (B, heads, L, L) -> (B, heads, h, w)."""
    rows = _patch_rows(weights.float(), prefix)
    return rows.reshape(*rows.shape[:-1], *hw)


def rollout(weights: Sequence[Tensor], prefix: int, hw: tuple[int, int]) -> Tensor:
    """Attention rollout over blocks (first to last): (B, h, w) class-token map.

    Each block's (B, heads, L, L) weights are averaged over heads, the identity is
    added (``0.5 A + 0.5 I``) and rows are renormalised; the product runs from the
    first block to the last (Abnar & Zuidema 2020, "Quantifying Attention Flow").
    """
    joint: Tensor | None = None
    for w in weights:
        a = w.float().mean(1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(-1, keepdim=True)
        joint = a if joint is None else a @ joint
    assert joint is not None, "rollout needs at least one block"
    rows = _patch_rows(joint, prefix)
    return rows.reshape(rows.shape[0], *hw)


def entropy(maps: Tensor) -> Tensor:
    """Normalised entropy of each map over its last two dims (1 = uniform, 0 = one cell)."""
    p = maps.flatten(-2).clamp_min(0)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    h = -(p * p.clamp_min(1e-30).log()).sum(-1)
    cells = p.shape[-1]
    return h / math.log(cells) if cells > 1 else torch.zeros_like(h)
