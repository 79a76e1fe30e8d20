"""Attention weights recomputed from a block's input, for fused attention that returns none.

Nothing here knows about Lightning. Attention computed by
``scaled_dot_product_attention`` never materialises its weights, so the probe pass
keeps each attention module's input (global attention) or its block's first-norm
output (Swin's windows) and the weights are recomputed here from the module's own
projections, in eval mode and without autograd:

* timm ``Attention`` (ViT, DeiT; ``qkv``, ``num_heads``, ``scale``, optional
  ``q_norm``/``k_norm``): ``softmax(q k^T * scale)``.
* ``nn.MultiheadAttention`` (torchvision's ViT): the module itself, called with
  ``need_weights=True, average_attn_weights=False``.
* HuggingFace's attention (ViT; ``q_proj``/``k_proj`` or ``query``/``key``, a head
  count, optional ``scaling``): ``softmax(q k^T * scaling)``.
* Swin window attention (timm ``WindowAttention``, torchvision
  ``ShiftedWindowAttention``): the block's cyclic shift, the window partition, the
  relative position bias and the shifted-window mask, as the block does it.

Example::

    >>> import torch
    >>> mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    >>> w = global_attention(mha, torch.randn(3, 5, 8))
    >>> tuple(w.shape), bool(torch.allclose(w.sum(-1), torch.ones(3, 2, 5)))
    ((3, 2, 5, 5), True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_cnnviz.core.tokens import head_count, projections

__all__ = ["global_attention", "is_window_attention", "window_received", "window_shift"]


def is_window_attention(module: nn.Module) -> bool:
    """Swin's windowed attention (it carries a ``window_size`` and a relative position bias)."""
    return hasattr(module, "window_size") and (
        hasattr(module, "_get_rel_pos_bias") or hasattr(module, "get_relative_position_bias")
    )


@torch.no_grad()
def global_attention(module: nn.Module, x: Tensor, batch: int | None = None) -> Tensor:
    """Attention weights (B, heads, L, L) of a global self-attention module for input tokens ``x``.

    Args:
        module: timm-style ``Attention`` or ``nn.MultiheadAttention``.
        x: its input tokens, (B * G, L, C) (sequence first for a ``MultiheadAttention``
            without ``batch_first``).
        batch: the image batch B; MobileViT attends within G groups of pixels per
            image (its unfolded patches): their weights are averaged per image.

    Raises:
        ValueError: the input is neither a token sequence nor, for a module with a
            conv ``qkv`` (CoAtNet's ``Attention2d``), an (N, C, H, W) map.
    """
    if x.dim() == 4 and isinstance(getattr(module, "qkv", None), nn.Conv2d):
        weights = _map_attention(module, x)
    elif x.dim() != 3:
        raise ValueError(f"attention over a {x.dim()}-D input is not supported")
    elif isinstance(module, nn.MultiheadAttention):
        x = x if module.batch_first else x.transpose(0, 1)
        _, weights = module(x, x, x, need_weights=True, average_attn_weights=False)
    elif (names := projections(module)) is not None and not hasattr(module, "qkv"):
        weights = _projected_attention(module, x, names)
    else:
        weights = _qkv_attention(module, x)
    groups = weights.shape[0] // batch if batch else 1
    if groups > 1 and weights.shape[0] == batch * groups:  # type: ignore[operator]
        weights = weights.view(batch, groups, *weights.shape[1:]).mean(1)
    return weights.float()


def _projected_attention(module: nn.Module, x: Tensor, names: tuple[str, str, str]) -> Tensor:
    """HuggingFace's form: separate query and key projections, ``scaling`` or 1/sqrt(d)."""
    batch, length, _ = x.shape
    heads = head_count(module)
    q, k = (getattr(module, n)(x).reshape(batch, length, heads, -1).transpose(1, 2)
            for n in names[:2])  # fmt: skip
    scale = getattr(module, "scaling", None) or q.shape[-1] ** -0.5
    return ((q * scale) @ k.transpose(-2, -1)).float().softmax(-1)


def _qkv_attention(module: nn.Module, x: Tensor) -> Tensor:
    batch, length, _ = x.shape
    qkv = module.qkv(x).reshape(batch, length, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q = getattr(module, "q_norm", nn.Identity())(q)
    k = getattr(module, "k_norm", nn.Identity())(k)
    scale = getattr(module, "scale", q.shape[-1] ** -0.5)
    return ((q * scale) @ k.transpose(-2, -1)).float().softmax(-1)


def _map_attention(module: nn.Module, x: Tensor) -> Tensor:
    """Weights of timm's ``Attention2d`` (CoAtNet, MaxViT 2-D blocks): tokens = map positions.

    Its relative position bias is added; a bias shared across blocks (passed at call
    time) is not known here and is left out.
    """
    batch, heads = x.shape[0], module.num_heads
    qkv = module.qkv(x)
    if getattr(module, "head_first", True):
        q, k, _ = qkv.view(batch, heads, -1, x.shape[2] * x.shape[3]).chunk(3, dim=2)
    else:
        q, k, _ = qkv.reshape(batch, 3, heads, qkv.shape[1] // (3 * heads), -1).unbind(1)
    logits = (q * module.scale).transpose(-2, -1) @ k
    rel_pos = getattr(module, "rel_pos", None)
    if rel_pos is not None and hasattr(rel_pos, "get_bias"):
        logits = logits + rel_pos.get_bias()
    return logits.float().softmax(-1)


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = tuple(value)  # type: ignore[arg-type]
    return int(first), int(second)


def window_shift(block: nn.Module, attn: nn.Module) -> tuple[int, int]:
    """A Swin block's cyclic shift (timm keeps it on the block, torchvision on the attention)."""
    return _pair(getattr(block, "shift_size", getattr(attn, "shift_size", 0)))


def _shift_mask(hp: int, wp: int, window: tuple[int, int], shift: tuple[int, int]) -> Tensor:
    """The shifted-window mask (nW, N, N): 0 within a region, -inf across (Liu et al. 2021)."""
    region = torch.zeros(hp, wp)
    count = 0
    for hs in _bands(window[0], shift[0]):
        for ws in _bands(window[1], shift[1]):
            region[hs, ws] = count
            count += 1
    ids = _partition(region[None, :, :, None], window)[..., 0]  # (nW, N)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, float("-inf"))


def _bands(window: int, shift: int) -> tuple[slice, ...]:
    if not shift:
        return (slice(None),)
    return slice(0, -window), slice(-window, -shift), slice(-shift, None)


def _partition(x: Tensor, window: tuple[int, int]) -> Tensor:
    """(B, H, W, C) -> (B * nW, wh * ww, C), windows row by row."""
    b, h, w, c = x.shape
    x = x.view(b, h // window[0], window[0], w // window[1], window[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window[0] * window[1], c)


@torch.no_grad()
def window_received(attn: nn.Module, block: nn.Module, x: Tensor) -> Tensor:
    """Attention each token receives inside its window, per head: (B, heads, H, W).

    Args:
        attn: the block's window attention (timm ``WindowAttention`` or torchvision
            ``ShiftedWindowAttention``).
        block: the Swin block holding it (for the shift).
        x: the block's first-norm output (B, H, W, C).

    The mean over the queries of each window of the softmax weights (relative
    position bias and shifted-window mask included), put back where each token sits.
    """
    b, h, w, c = x.shape
    window = _pair(attn.window_size)
    shift = window_shift(block, attn)
    if window[0] >= h:  # a window that covers the map is never shifted (both libraries)
        window, shift = (h, window[1]), (0, shift[1])
    if window[1] >= w:
        window, shift = (window[0], w), (shift[0], 0)
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    pad_h, pad_w = (-h) % window[0], (-w) % window[1]
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    windows = _partition(x, window)
    heads, n = attn.num_heads, window[0] * window[1]
    q, k, _ = attn.qkv(windows).reshape(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    logits = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
    bias = attn._get_rel_pos_bias() if hasattr(attn, "_get_rel_pos_bias") else None
    bias = attn.get_relative_position_bias() if bias is None else bias
    if bias.shape[-1] == n:
        logits = logits + bias.view(1, heads, n, n)
    if any(shift):
        mask = _shift_mask(hp, wp, window, shift).to(logits)
        logits = (logits.view(b, -1, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
    received = logits.float().softmax(-1).mean(2)  # (B * nW, heads, N)
    received = received.view(b, hp // window[0], wp // window[1], heads, *window)
    received = received.permute(0, 3, 1, 4, 2, 5).reshape(b, heads, hp, wp)[:, :, :h, :w]
    return torch.roll(received, shifts=shift, dims=(2, 3)) if any(shift) else received
