"""Text on uint8 images: captions above tiles, labels, bar charts.

Labels use Pillow's bundled 6x11 bitmap font, rasterised once into an atlas so
that drawing is tensor indexing (no figure, no pyplot).

Example::

    >>> import torch
    >>> caption(torch.zeros(3, 28, 28, dtype=torch.uint8), "true 7 / pred 1 0.83").shape
    torch.Size([3, 41, 122])
    >>> text_size("conv1", scale=2)
    (60, 22)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, lru_cache

import torch
from torch import Tensor

from lightning_cnnviz.core.rendering import Color, to_rgb, upscale, vstack

__all__ = [
    "CARD_WIDTH",
    "GLYPH_H",
    "GLYPH_W",
    "MIN_GLYPH_PX",
    "bar_chart",
    "caption",
    "columns_that_fit",
    "draw_text",
    "draw_texts",
    "legible_width",
    "rendered_glyph_px",
    "text_size",
]


@cache
def _font_atlas() -> Tensor:
    """Printable ASCII (32-126) as a bool tensor ``(95, 11, 6)`` from Pillow's bitmap font."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default_imagefont()
    glyphs = []
    for code in range(32, 127):
        canvas = Image.new("L", (6, 11))
        ImageDraw.Draw(canvas).text((0, 0), chr(code), fill=255, font=font)
        glyphs.append(
            torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).reshape(11, 6)
        )
    return torch.stack(glyphs) > 0


GLYPH_W, GLYPH_H = 6, 11
CARD_WIDTH = 350  # px: TensorBoard's image card, at its default size, scales images to this
MIN_GLYPH_PX = 7  # label glyphs at least this tall once scaled to CARD_WIDTH


def rendered_glyph_px(image_width: int, scale: int = 1) -> float:
    """How tall a glyph drawn at ``scale`` shows once the image is scaled to ``CARD_WIDTH``.

    Example::

        >>> rendered_glyph_px(550), round(rendered_glyph_px(994), 1)
        (7.0, 3.9)
    """
    return GLYPH_H * scale * CARD_WIDTH / max(1, image_width)


def legible_width(scale: int = 1) -> int:
    """The widest image whose ``scale`` glyphs stay ``MIN_GLYPH_PX`` tall in a card.

    Example::

        >>> legible_width(), legible_width(2)
        (550, 1100)
    """
    return GLYPH_H * scale * CARD_WIDTH // MIN_GLYPH_PX


def columns_that_fit(slot_width: int, count: int, scale: int = 1, most: int = 8) -> int:
    """Tiles a row (at most ``most``) so that a grid of ``slot_width`` tiles stays legible.

    Example::

        >>> columns_that_fit(124, 16)
        4
    """
    return max(1, min(most, count, legible_width(scale) // max(1, slot_width)))


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """Width and height in pixels of ``text`` drawn at ``scale``."""
    return len(text) * GLYPH_W * scale, GLYPH_H * scale


@lru_cache(maxsize=4096)  # labels repeat from event to event (channel numbers, legends)
def _text_mask(text: str, scale: int) -> Tensor:
    codes = torch.tensor([min(max(ord(c), 32), 126) - 32 for c in text] or [0])
    mask = _font_atlas()[codes].permute(1, 0, 2).reshape(GLYPH_H, -1)  # glyphs side by side
    return upscale(mask[:, : len(text) * GLYPH_W], scale)


def draw_text(
    img: Tensor, text: str, x: int, y: int, color: Color = (255, 255, 255), scale: int = 1
) -> Tensor:
    """Burn ``text`` into a copy of a uint8 ``(3, H, W)`` image at ``(x, y)``; clipped."""
    return draw_texts(img, [(text, x, y)], color, scale)


def draw_texts(
    img: Tensor,
    texts: Sequence[tuple[str, int, int]],
    color: Color = (255, 255, 255),
    scale: int = 1,
) -> Tensor:
    """Burn each ``(text, x, y)`` into one copy of a uint8 ``(3, H, W)`` image; clipped.

    Example::

        >>> out = draw_texts(torch.zeros(3, 11, 20, dtype=torch.uint8), [("1", 0, 0), ("2", 8, 0)])
        >>> bool(out[:, :, :6].any()), bool(out[:, :, 8:14].any()), bool(out[:, :, 14:].any())
        (True, True, False)
        >>> draw_texts(torch.zeros(3, 2, 20, dtype=torch.uint8), [("1", -3, -5)]).shape  # clipped
        torch.Size([3, 2, 20])
    """
    out = img.clone()
    paint = torch.tensor(color, dtype=out.dtype, device=out.device)[:, None, None]
    for text, x, y in texts:
        mask = _text_mask(text, scale)
        top, left = max(y, 0), max(x, 0)  # a label placed above a tile lower than it
        mask = mask[top - y :, left - x :]
        h, w = min(mask.shape[0], out.shape[-2] - top), min(mask.shape[1], out.shape[-1] - left)
        if h <= 0 or w <= 0 or not text:
            continue
        region = out[:, top : top + h, left : left + w]
        region[:] = torch.where(mask[:h, :w].to(out.device), paint, region)
    return out


def caption(
    img: Tensor, text: str, color: Color = (255, 255, 255), scale: int = 1, margin: int = 1
) -> Tensor:
    """A tile with a label strip above it, widened where the text is longer than the tile."""
    img = to_rgb(img)
    text_w, text_h = text_size(text, scale)
    width = max(img.shape[-1], text_w + 2 * margin)
    strip = torch.zeros(3, text_h + 2 * margin, width, dtype=torch.uint8, device=img.device)
    strip = draw_text(strip, text, margin, margin, color, scale)
    return vstack([strip, img], gap=0)


def bar_chart(
    values: Tensor | Sequence[float],
    labels: Sequence[str],
    height: int = 64,
    bar_width: int = 12,
    color: Color = (76, 175, 80),
) -> Tensor:
    """Vertical bars for values in ``[0, 1]`` with a label under each and the value above."""
    values = torch.nan_to_num(torch.as_tensor(values, dtype=torch.float32), nan=0.0).clamp(0, 1)
    widest = max([text_size(str(label))[0] for label in labels] + [text_size("100")[0]])
    slot = max(bar_width, widest) + GLYPH_W  # a glyph's width between neighbouring labels
    _, text_h = text_size("0")
    canvas = torch.zeros(3, height + 2 * text_h + 4, slot * len(values), dtype=torch.uint8)
    paint = torch.tensor(color, dtype=torch.uint8)[:, None, None]
    for k, (value, label) in enumerate(zip(values.tolist(), labels, strict=True)):
        x0 = k * slot + (slot - bar_width) // 2
        bar_h = round(value * height)
        top = text_h + 2 + height - bar_h
        canvas[:, top : top + bar_h, x0 : x0 + bar_width] = paint
        number, name = f"{round(value * 100)}", str(label)  # centred over / under the bar
        x_number = k * slot + (slot - text_size(number)[0]) // 2
        canvas = draw_text(canvas, number, x_number, max(0, top - text_h - 1))
        canvas = draw_text(canvas, name, k * slot + (slot - text_size(name)[0]) // 2,
                           text_h + 4 + height)  # fmt: skip
    return canvas
