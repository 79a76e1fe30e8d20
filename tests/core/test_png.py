"""The direct PNG writer: Pillow reads back exactly the pixels written."""

import io

import numpy as np
import torch
from PIL import Image

from lightning_cnnviz.core.png import encode_png
from lightning_cnnviz.core.rendering import apply_colormap, colormap, to_uint8, upscale


def _read(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_encode_png_rgb_round_trips_every_pixel():
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 17, 23), dtype=torch.uint8, generator=generator)
    back = _read(encode_png(image))
    assert back.mode == "RGB" and back.size == (23, 17)
    assert np.array_equal(np.asarray(back), image.permute(1, 2, 0).numpy())


def test_encode_png_palette_round_trips_colours():
    indices = torch.arange(256, dtype=torch.uint8).reshape(16, 16)
    palette = to_uint8(colormap("viridis"))
    back = _read(encode_png(indices, palette))
    assert back.mode == "P"
    rgb = np.asarray(back.convert("RGB"))
    assert np.array_equal(rgb, palette[indices.long()].numpy())


def test_encode_png_flat_tiles_compress_well():
    tiles = upscale(apply_colormap(torch.rand(8, 8, generator=torch.Generator().manual_seed(1))), 8)
    png = encode_png(tiles)
    assert len(png) < tiles.numel() / 10  # 64 x 64 x 3 bytes of flat 8 px cells
