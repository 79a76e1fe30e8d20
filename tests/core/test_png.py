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


def test_encode_png_few_colours_stored_indexed_exactly():
    generator = torch.Generator().manual_seed(2)  # two of its colours share a hash slot
    colours = torch.randint(0, 256, (256, 3), dtype=torch.uint8, generator=generator)
    which = torch.randint(0, 256, (90, 70), generator=generator)
    which[0, :] = torch.arange(70)  # every colour appears, some only once
    which[1, :] = torch.arange(70, 140)
    which[2, :] = torch.arange(140, 210)
    which[3, :46] = torch.arange(210, 256)
    image = colours[which].permute(2, 0, 1)
    png = encode_png(image)
    back = _read(png)
    assert back.mode == "P"
    assert np.array_equal(np.asarray(back.convert("RGB")), image.permute(1, 2, 0).numpy())
    assert len(png) < len(_rgb_png(image))


def test_encode_png_colour_missed_by_the_sample_stays_exact():
    image = torch.zeros(3, 200, 300, dtype=torch.uint8)
    image[:, 7, 11] = torch.tensor([1, 2, 3], dtype=torch.uint8)  # one pixel of its own colour
    image[:, 150:, :] = 255
    back = _read(encode_png(image))
    assert np.array_equal(np.asarray(back.convert("RGB")), image.permute(1, 2, 0).numpy())


def test_encode_png_many_colours_stay_rgb():
    image = upscale(apply_colormap(torch.linspace(0, 1, 256).reshape(16, 16)), 4)
    image[:, 0, :10] = torch.arange(10, dtype=torch.uint8)  # 256 + 10 grey colours
    back = _read(encode_png(image))
    assert back.mode == "RGB"
    assert np.array_equal(np.asarray(back), image.permute(1, 2, 0).numpy())


def _rgb_png(image: torch.Tensor) -> bytes:
    """The same image written by Pillow as RGB, for size."""
    out = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(out, format="PNG")
    return out.getvalue()
