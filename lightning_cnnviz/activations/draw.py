"""The ``activations/{layer}/dead_strip`` picture, sized for a TensorBoard card.

Nothing here knows about Lightning. ``dead_strip_image`` draws a history of
per-unit active shares (``dead.strip_append``: rows are units, columns are logs,
uint8 where 0 is dead and 1-255 the share of inputs a unit was active on) with
unit index ticks on the left, a bounded height and a colour legend that sets dead
units (black) apart from rarely active ones (dark blue, never black).

Example::

    >>> import torch
    >>> image = dead_strip_image(torch.tensor([[0, 0], [1, 255]], dtype=torch.uint8))
    >>> image.dtype, image.shape[0], image.shape[2] <= CARD_WIDTH
    (torch.uint8, 3, True)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lightning_cnnviz.core import labels, rendering

__all__ = [
    "ACTIVE_FLOOR",
    "CARD_WIDTH",
    "DEAD",
    "StripLayout",
    "dead_strip_image",
    "strip_layout",
    "strip_palette",
]

CARD_WIDTH = labels.CARD_WIDTH
MAX_BODY_H = 256  # strip rows at most this tall: a 128-unit layer gets 2 px a unit
MAX_ROW_PX, MAX_COLUMN_PX = 8, 32
DEAD = (0, 0, 0)
ACTIVE_FLOOR = 0.3  # viridis from here up: the least active unit is blue, not black
_CMAP = "viridis"
_GAP = 3  # px between the title, the strip, the legend and the axis line


def strip_palette() -> Tensor:
    """``(256, 3)`` uint8: index 0 (dead) black, 1-255 viridis from ``ACTIVE_FLOOR`` to 1."""
    table = rendering.colormap(_CMAP)
    index = torch.linspace(ACTIVE_FLOOR, 1.0, 255).mul(255).round().long()
    colours = torch.cat([torch.tensor([DEAD], dtype=torch.float32) / 255, table[index]])
    return rendering.to_uint8(colours)


def _ticks(rows: int, row_px: int, units: int) -> list[tuple[int, int]]:
    """``(row, unit index)`` pairs to label, at least two glyph heights apart."""
    group = max(1, -(-units // rows))  # channels per row when a wide layer is grouped
    every = max(1, -(-(labels.GLYPH_H * 2) // row_px))
    nice = next(n for n in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 256, 512)
                if n >= every or n == 512)  # fmt: skip
    return [(row, row * group) for row in range(0, rows, nice)]


class StripLayout(NamedTuple):
    """Where the strip's cells lie in the picture.

    Row ``r``, column ``c`` is the cell at ``[top + r * row_px, left + c * column_px]``
    of ``row_px`` x ``column_px`` pixels.
    """

    top: int
    left: int
    row_px: int
    column_px: int


def strip_layout(rows: int, columns: int, units: int | None = None, title: str = "") -> StripLayout:
    """The layout ``dead_strip_image`` draws a ``(rows, columns)`` history with."""
    units = units or rows
    row_px = max(1, min(MAX_ROW_PX, MAX_BODY_H // max(1, rows)))
    tick_w = labels.text_size(str(max(units - 1, 0)))[0] + 4
    column_px = max(1, min(MAX_COLUMN_PX, (CARD_WIDTH - tick_w - 4) // max(1, columns)))
    top = labels.GLYPH_H + 2 + _GAP if title else 0
    return StripLayout(top, tick_w + 1, row_px, column_px)


def dead_strip_image(history: Tensor, units: int | None = None, title: str = "") -> Tensor:
    """A ``(rows, logs)`` uint8 strip as a uint8 RGB picture at most ``CARD_WIDTH`` wide.

    Args:
        history: rows are units (or groups of consecutive units), columns are logs,
            oldest first; 0 is dead, 1-255 the active share.
        units: channels of the layer (``rows`` unless grouped), for the tick labels.
        title: a line above the strip, e.g. the layer's name.
    """
    rows, columns = history.shape
    units = units or rows
    _, left, row_px, column_px = strip_layout(rows, columns, units, title)
    tick_w = left - 1
    body = strip_palette()[history.long()].permute(2, 0, 1)  # (3, rows, logs)
    body = rendering.upscale(body, (row_px, column_px))
    axis = torch.zeros(3, body.shape[1], tick_w, dtype=torch.uint8)
    ticks = list(_ticks(rows, row_px, units))
    bottom = max(0, body.shape[1] - labels.GLYPH_H)
    placed = [(str(unit), 1, min(row * row_px, bottom)) for row, unit in ticks]
    axis = labels.draw_texts(axis, placed, (200, 200, 200))
    for row, _ in ticks:
        axis[:, row * row_px, -3:] = 200  # the tick itself
    strip = rendering.hstack([axis, body], gap=1)
    parts = [strip, _legend(max(strip.shape[-1], 200)), _x_axis(tick_w, body.shape[-1], columns)]
    if title:
        parts.insert(0, labels.caption(torch.zeros(3, 0, 1, dtype=torch.uint8), title))
    return rendering.vstack(parts, gap=_GAP)


def _x_axis(offset: int, width: int, columns: int) -> Tensor:
    text = f"unit (rows) x log (columns, {columns}, newest right)"
    line = torch.zeros(3, labels.GLYPH_H + 2, offset + max(width, labels.text_size(text)[0]),
                       dtype=torch.uint8)  # fmt: skip
    return labels.draw_text(line, text, 1, 1, (200, 200, 200))


def _legend(width: int) -> Tensor:
    """``[black] dead  [blue..yellow] rarely .. always active``."""
    glyph_h = labels.GLYPH_H
    canvas = torch.zeros(3, glyph_h + 4, width, dtype=torch.uint8)
    canvas[:, 2 : 2 + glyph_h, 1 : 1 + glyph_h] = 60  # a grey frame around the black swatch
    canvas[:, 3 : 1 + glyph_h, 2:glyph_h] = torch.tensor(DEAD, dtype=torch.uint8)[:, None, None]
    x = glyph_h + 3
    canvas = labels.draw_text(canvas, "dead", x, 2)
    x += labels.text_size("dead ")[0] + 4
    canvas = labels.draw_text(canvas, "rarely", x, 2)
    x += labels.text_size("rarely ")[0]
    ramp_w = max(16, width - x - labels.text_size(" always active")[0] - 2)
    ramp = strip_palette()[torch.linspace(1, 255, ramp_w).round().long()].T  # (3, ramp_w)
    canvas[:, 2 : 2 + glyph_h, x : x + ramp_w] = ramp[:, None, :]
    return labels.draw_text(canvas, "always active", x + ramp_w + 4, 2)
