"""A layer's output as (N, C, h, w) maps the feature-map view draws.

Nothing here knows about Lightning. A CNN's maps are drawn as they are; a signal's
(N, C, L) and a volume's (N, C, D, H, W) as pictures (``as_map_pictures``); a
transformer's tokens laid on their patch grid (``as_map``).

Example::

    >>> import torch
    >>> as_map_pictures(torch.zeros(2, 3, 40), 3).shape[:2]
    torch.Size([2, 3])
    >>> as_map(torch.zeros(2, 8, 4, 4), torch.nn.Identity(), torch.nn.Identity(),
    ...        torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 8, 4, 4])
"""

from __future__ import annotations

from torch import Tensor, nn

from lightning_cnnviz.core.inputs import as_pictures
from lightning_cnnviz.core.tokens import grid_layout, prefix_tokens, to_grid

__all__ = ["as_map", "as_map_pictures"]


def as_map_pictures(act: Tensor, ndim: int) -> Tensor:
    """A signal's (N, C, L) or a volume's (N, C, D, H, W) maps as (N, C, h, w) pictures."""
    if act.dim() == ndim and ndim in (3, 5):
        return as_pictures(act, strip=1, stack_channels=False)[0]
    return act


def as_map(act: Tensor | None, module: nn.Module, model: nn.Module, x: Tensor) -> Tensor | None:
    """A layer's output as (N, C, h, w): a CNN map as it is, tokens laid on the patch grid.

    Token grids only come from images (4-D ``x``); a signal's or volume's maps are
    already pictures (``as_map_pictures``). MobileViT attends within groups of pixels (its
    unfolded patches, (N * P, L, C)): the P groups of an image are averaged.
    """
    if act is None:
        return None
    if x.dim() != 4:
        return act if act.dim() == 4 else None
    batch = len(x)
    if act.dim() == 3 and act.shape[0] != batch and act.shape[0] % batch == 0:
        act = act.view(batch, -1, *act.shape[1:]).mean(1)  # MobileViT: pixel groups per image
    image_hw = (int(x.shape[-2]), int(x.shape[-1]))
    layout = grid_layout(tuple(act.shape), image_hw, prefix_tokens(model), module, len(x))
    if layout is None:
        return act if act.dim() == 4 else None
    return to_grid(act, layout).contiguous()
