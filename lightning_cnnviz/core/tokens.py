"""Token grids: a transformer layer's output as a (N, C, h, w) map over the patch grid.

Nothing here knows about Lightning. A vision transformer's layers output tokens,
not maps: ``(N, L, C)`` with ``L = prefix + h*w`` (ViT and DeiT put a class token,
a distillation token or register tokens in front of the patch tokens), or
``(N, h, w, C)`` (Swin, and the channels-last parts of ConvNeXt). ``grid_layout``
tells, from a layer's output shape, the input size and the model's number of prefix
tokens, how to read it; ``to_grid`` drops the prefix tokens and reshapes to
``(N, C, h, w)``, so that Grad-CAM, feature maps and attention maps treat a token
grid as a CNN's feature map. Which module is a transformer block (a norm and an
attention child) is here too, for the layer choices of every view.

Example::

    >>> import torch
    >>> tokens = torch.randn(2, 1 + 4 * 4, 8)  # a class token and a 4x4 patch grid
    >>> layout = grid_layout(tuple(tokens.shape), (32, 32), prefix=1)
    >>> layout
    Layout(kind='tokens', prefix=1, hw=(4, 4))
    >>> tuple(to_grid(tokens, layout).shape)
    (2, 8, 4, 4)
    >>> grid_layout((2, 16, 4, 4), (32, 32))  # a CNN map stays as it is
    Layout(kind='nchw', prefix=0, hw=(4, 4))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

__all__ = [
    "MAX_PREFIX",
    "Layout",
    "attends",
    "attention_child",
    "block_norm",
    "grid_layout",
    "head_count",
    "is_attention",
    "prefix_tokens",
    "projections",
    "to_grid",
    "transformer_blocks",
]

MAX_PREFIX = 8  # class + distillation + register tokens searched for without a model hint


@dataclass(frozen=True)
class Layout:
    """How a layer's output lies over the patch grid.

    Attributes:
        kind: ``"nchw"`` (a CNN map), ``"nhwc"`` (Swin) or ``"tokens"`` (N, L, C).
        prefix: tokens before the patch tokens (``"tokens"`` only).
        hw: the patch grid (rows, columns).
    """

    kind: str
    prefix: int
    hw: tuple[int, int]


def prefix_tokens(model: nn.Module) -> int | None:
    """Class, distillation and register tokens in front of the patches, when the model says.

    timm models carry ``num_prefix_tokens``; torchvision's ``VisionTransformer`` a
    ``class_token``. ``None``: not known (``grid_layout`` then searches).

    Example::

        >>> prefix_tokens(nn.Linear(1, 1)) is None
        True
    """
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int):
        return count
    if isinstance(getattr(model, "class_token", None), Tensor | nn.Parameter):
        return 1
    return None


def _same_aspect(h: int, w: int, image_hw: tuple[int, int]) -> bool:
    big_h, big_w = image_hw
    return 0 < h <= big_h and 0 < w <= big_w and h * big_w == w * big_h


def _is_channels_last_norm(module: nn.Module | None) -> bool:
    """A ``LayerNorm`` over the last dim of a 4-D tensor (timm's ``LayerNorm2d`` is not)."""
    norms = [module] if module is not None else []
    norms += list(module.children()) if module is not None else []
    return any(
        isinstance(m, nn.LayerNorm) and not type(m).__name__.endswith("2d") for m in norms[:2]
    )


def grid_layout(
    shape: tuple[int, ...],
    image_hw: tuple[int, int],
    prefix: int | None = None,
    module: nn.Module | None = None,
    batch: int | None = None,
) -> Layout | None:
    """How to read an output of ``shape`` as a map over the patch grid, or ``None``.

    Args:
        shape: the layer's output shape.
        image_hw: the model input's (H, W); a grid has the same aspect ratio.
        prefix: tokens before the patches (``prefix_tokens``); ``None`` searches
            ``0..MAX_PREFIX`` for the smallest count that leaves a grid.
        module: the layer, to break a tie between (N, C, h, w) and (N, h, w, C)
            when C equals h (a channels-last ``LayerNorm`` means (N, h, w, C)).
        batch: the batch size; an output with another first dimension (MobileViT's
            unfolded patches) is not a grid.
    """
    if batch is not None and (not shape or shape[0] != batch):
        return None
    if len(shape) == 4:
        first = _same_aspect(shape[2], shape[3], image_hw)
        last = _same_aspect(shape[1], shape[2], image_hw)
        if last and (not first or _is_channels_last_norm(module)):
            return Layout("nhwc", 0, (shape[1], shape[2]))
        return Layout("nchw", 0, (shape[2], shape[3])) if first else None
    if len(shape) != 3:
        return None
    counts = [prefix] if prefix is not None else range(MAX_PREFIX + 1)
    for count in counts:
        patches = shape[1] - count
        if patches <= 0:
            continue
        h = round(math.sqrt(patches * image_hw[0] / image_hw[1]))
        if h > 0 and patches % h == 0 and _same_aspect(h, patches // h, image_hw):
            return Layout("tokens", count, (h, patches // h))
    return None


def to_grid(x: Tensor, layout: Layout) -> Tensor:
    """``x`` as (N, C, h, w): prefix tokens dropped, tokens laid on the patch grid."""
    if layout.kind == "nchw":
        return x
    if layout.kind == "nhwc":
        return x.permute(0, 3, 1, 2)
    h, w = layout.hw
    return x[:, layout.prefix :].transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


_PROJECTIONS = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))
_HEADS = ("num_heads", "num_attention_heads")


def projections(module: nn.Module) -> tuple[str, str, str] | None:
    """The names of a module's separate query, key and value ``nn.Linear`` s, if it has them."""
    return next(
        (names for names in _PROJECTIONS
         if all(isinstance(getattr(module, n, None), nn.Linear) for n in names)),
        None,
    )  # fmt: skip


def head_count(module: nn.Module) -> int | None:
    """An attention module's head count (``num_heads``; HuggingFace's ``num_attention_heads``)."""
    return next((h for n in _HEADS if isinstance(h := getattr(module, n, None), int)), None)


def is_attention(module: nn.Module) -> bool:
    """A self-attention module whose weights ``attention.weights`` can recompute.

    ``nn.MultiheadAttention``, one with ``qkv`` and ``num_heads`` (timm), or one with
    separate query, key and value projections and a head count (HuggingFace's
    ``q_proj``/``k_proj``/``v_proj`` or ``query``/``key``/``value``).
    """
    if isinstance(module, nn.MultiheadAttention):
        return True
    if isinstance(getattr(module, "qkv", None), nn.Module) and hasattr(module, "num_heads"):
        return True
    return projections(module) is not None and head_count(module) is not None


def attends(module: nn.Module) -> bool:
    """A self-attention module of any form, enough to know a transformer block by.

    ``is_attention``'s forms, separate query, key and value projections (HuggingFace's
    ``query``/``key``/``value``, ``q_proj``/...), or a wrapper whose direct child has
    them (HuggingFace's ``ViTAttention``).

    ``transformer_blocks`` reads it; ``AttentionMonitor`` reads ``is_attention``'s forms,
    which need a head count besides.

    Example::

        >>> hf = nn.Module()
        >>> hf.query, hf.key, hf.value = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        >>> wrapper = nn.Module()
        >>> wrapper.attention, wrapper.output = hf, nn.Linear(4, 4)
        >>> attends(hf), attends(wrapper), is_attention(hf), attends(nn.Linear(4, 4))
        (True, True, False, False)
    """
    if is_attention(module):
        return True
    # linear projections of tokens: a CNN's self-attention block (SAGAN's 1x1 convs named
    # `query`, `key`, `value`) beside a BatchNorm is no transformer block
    return projections(module) is not None or any(
        projections(child) is not None for child in module.children()
    )


def attention_child(block: nn.Module) -> nn.Module | None:
    """The attention module among a block's direct children (``attends``), if any."""
    return next((m for m in block.children() if attends(m)), None)


def block_norm(block: nn.Module) -> str | None:
    """The name of a transformer block's first norm child (``norm1``, ``ln_1``), if any.

    A norm module, or a child named like one (CoAtNet's ``norm1`` holds a norm and
    a downsampling).
    """
    for name, child in block.named_children():
        if isinstance(child, nn.LayerNorm | nn.GroupNorm | nn.BatchNorm2d) or "norm" in name:
            return name
    return None


def transformer_blocks(layers: Mapping[str, nn.Module]) -> list[str]:
    """Names of the transformer blocks (a norm and an attention among direct children), in order.

    Example::

        >>> blk = nn.Module()
        >>> blk.norm1, blk.attn = nn.LayerNorm(4), nn.MultiheadAttention(4, 1)
        >>> transformer_blocks(dict(nn.Sequential(nn.Linear(4, 4), blk).named_children()))
        ['1']
    """
    return [
        name
        for name, module in layers.items()
        if attention_child(module) is not None and block_norm(module) is not None
    ]
