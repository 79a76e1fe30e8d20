"""PNG bytes of uint8 images, written directly: no filter, zlib level 6.

The monitors' pictures are flat colour tiles (colormapped maps upscaled by nearest
neighbour, grids with 1 px separators, text), which zlib compresses well as they
are. Pillow's PNG writer tries its five row filters on every row (adaptive
filtering), which costs more than the compression itself and makes such files
larger: a 115 x 457 feature-map grid encodes in 0.4 ms here (11 KB) against 1.0 ms
(15 KB) with Pillow at the same zlib level. Level 6 rather than 1: a kernel grid's
repeated tiles (resnet18's 1601 x 201 grid: 17 KB against 38 KB) take half the bytes in
about the same time; noisier pictures (feature maps, CAM overlays) shrink 3-10%.
``zlib.compress`` releases the GIL, so the training thread's Python keeps running while
the sink's thread encodes.

An RGB image of at most 256 colours (a colormapped grid with its labels: kernels, dead
strips, stage grids, confusion matrices) is stored indexed, one byte per pixel: the
same pixels in a third to a half of the bytes, and less to compress. Finding out costs
a sample of 4096 pixels on other images (photographs, overlays), and about 1 ms per
100k pixels on those it indexes.

Example::

    >>> import torch
    >>> png = encode_png(torch.zeros(3, 4, 5, dtype=torch.uint8))
    >>> png[1:4], len(png) < 100
    (b'PNG', True)
    >>> png[25]  # colour type: one colour, stored indexed
    3
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch
from torch import Tensor

__all__ = ["encode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_RGB, _INDEXED = 2, 3  # PNG colour types


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_HASH = np.uint32(2654435761)  # Knuth's multiplicative hash; the top 20 bits pick a slot


def _indexed(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(H, W)`` indices and ``(n, 3)`` colours of ``(H, W, 3)`` pixels, or None (> 256 colours).

    A sample of pixels tells the many-coloured images (photographs, overlays) at once;
    on the others every pixel looks its colour up in a hash table of the colours found
    so far, and the colours the sample missed (a label's glyphs) are added once.
    """
    p = pixels.astype(np.uint32)
    flat = (p[..., 0] << 16 | p[..., 1] << 8 | p[..., 2]).ravel()
    colours = np.unique(flat[:: max(1, flat.size // 4096)])
    for _ in range(2):
        if colours.size > 256:
            return None
        index, missed = _lookup(colours, flat)
        if not missed.size:
            palette = np.stack([colours >> 16, colours >> 8 & 255, colours & 255], axis=1)
            return index.reshape(pixels.shape[:2]), palette.astype(np.uint8)
        colours = np.union1d(colours, missed)
    return None


def _lookup(colours: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's index into sorted ``colours``, and the colours of pixels not found.

    A multiplicative hash picks one of 2**20 slots; where two colours share a slot a
    binary search stands in (slower, as exact).
    """
    slots = (colours * _HASH) >> np.uint32(12)
    if np.unique(slots).size == colours.size:
        table = np.zeros(1 << 20, dtype=np.uint8)
        table[slots] = np.arange(colours.size)
        index = table[(flat * _HASH) >> np.uint32(12)]
    else:
        index = np.searchsorted(colours, flat).clip(max=colours.size - 1).astype(np.uint8)
    wrong = colours[index] != flat
    return index, np.unique(flat[wrong]) if wrong.any() else flat[:0]


def encode_png(image: Tensor, palette: Tensor | None = None, compress_level: int = 6) -> bytes:
    """PNG bytes of a uint8 ``(3, H, W)`` image, or of ``(H, W)`` indices into ``palette``.

    Args:
        image: uint8 ``(3, H, W)`` RGB (stored indexed when it has at most 256 colours),
            or uint8 ``(H, W)`` palette indices.
        palette: ``(n <= 256, 3)`` colours for indices (stored one byte per pixel).
        compress_level: zlib level (6: repeated tiles compress twice as well as at 1).
    """
    if palette is not None:
        pixels, colours = image.contiguous().numpy(), palette.to(torch.uint8).contiguous().numpy()
    else:
        rgb = image.permute(1, 2, 0).contiguous().numpy()  # (H, W, 3)
        pixels, colours = _indexed(rgb) or (rgb, None)
    colour_type = _RGB if colours is None else _INDEXED
    height, width = pixels.shape[:2]
    rows = np.zeros((height, 1 + pixels[0].size), dtype=np.uint8)  # filter byte 0: none
    rows[:, 1:] = pixels.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    if colours is not None:
        chunks.append(_chunk(b"PLTE", colours.tobytes()))
    chunks += [_chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level)), _chunk(b"IEND", b"")]
    return _SIGNATURE + b"".join(chunks)
