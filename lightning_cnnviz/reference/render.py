"""Rendering of offline MNIST-like digits from the fonts that ship with matplotlib.

Each (digit, face, stroke) glyph is rasterised once at high resolution with
Pillow; samples are then made in batches with torch only: a random affine
(rotation, shear, aspect, slant), a smooth elastic displacement, stroke width
changes (max-pool dilation / erosion), blur and noise, all drawn from one
``torch.Generator`` (never the global RNG). Like MNIST, every digit is white on
black, fitted into a 20x20 box and centred by its centre of mass in 28x28.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_cnnviz.reference.strokes import stroke_digits

__all__ = ["FACES", "render_digits"]

#: Font files (in matplotlib's ``fonts/ttf`` folder) the glyphs are drawn from.
FACES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBol.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
)
_STROKES = (0, 2)  # Pillow stroke widths at the template resolution
_CANVAS = 128  # template side (pixels)
_FONT_SIZE = 88
_BLUR = 3  # template blur (pixels) behind the stroke-width threshold
_HI = 3  # supersampling factor of the output (28 * 3 = 84), then average-pooled
_BOX = 20.0  # MNIST: the digit's bounding box is fitted into 20x20 ...
_SIDE = 28  # ... and centred by its centre of mass in 28x28
_PEN_SHARE = 0.8  # share of handwriting-like pen strokes (the rest: font glyphs)


def _font_dir() -> str:
    import matplotlib  # only for the path of its bundled fonts; pyplot is never imported

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


@lru_cache(maxsize=1)
def _templates() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Blurred glyph rasters, labels, centres of mass and extreme points.

    Returns (T, 1, C, C) rasters in [0, 1] sorted by digit, labels (T,), centres of
    mass (T, 2) and per-row leftmost/rightmost ink pixels (T, 2C, 2), in pixels from
    the canvas centre.
    """
    from PIL import Image, ImageDraw, ImageFont

    folder = _font_dir()
    rasters, labels = [], []
    fonts = [
        ImageFont.truetype(os.path.join(folder, face), _FONT_SIZE)
        for face in FACES
        if os.path.exists(os.path.join(folder, face))
    ]
    for digit in range(10):  # sorted by digit: the sampler relies on it
        for font in fonts:
            for stroke in _STROKES:
                img = Image.new("L", (2 * _CANVAS, 2 * _CANVAS))
                ImageDraw.Draw(img).text(
                    (_CANVAS // 2, _CANVAS // 4),
                    str(digit),
                    fill=255,
                    font=font,
                    stroke_width=stroke,
                    stroke_fill=255,
                )
                box = img.getbbox()
                if box is None:
                    continue
                glyph = img.crop(box)
                scale = min(1.0, (_CANVAS - 8) / max(glyph.size))
                if scale < 1.0:
                    size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
                    glyph = glyph.resize(size, Image.LANCZOS)
                canvas = Image.new("L", (_CANVAS, _CANVAS))
                canvas.paste(glyph, ((_CANVAS - glyph.width) // 2, (_CANVAS - glyph.height) // 2))
                rasters.append(torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8))
                labels.append(digit)
    if not rasters:
        raise RuntimeError(f"no usable font files found in {folder!r} (looked for {FACES})")
    images = torch.stack(rasters).view(-1, 1, _CANVAS, _CANVAS).float() / 255.0
    # Blurred glyphs: thresholding them at different levels gives different stroke widths.
    taps = torch.arange(-3 * _BLUR, 3 * _BLUR + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * _BLUR**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv2d(images, kernel.view(1, 1, 1, -1), padding=(0, 3 * _BLUR))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1), padding=(3 * _BLUR, 0))
    # Continuous pixel coordinates with 0 at the canvas centre: pixel i covers [i, i+1).
    coords = torch.arange(_CANVAS, dtype=torch.float32) + 0.5 - _CANVAS / 2
    mass = images[:, 0]
    total = mass.sum(dim=(1, 2))
    com = torch.stack(
        [(mass.sum(1) * coords).sum(1) / total, (mass.sum(2) * coords).sum(1) / total], dim=1
    )
    ink = mass > 0.25
    rows = ink.any(dim=2)  # (T, C)
    big = float(_CANVAS)
    left = torch.where(ink, coords.view(1, 1, -1), big).amin(dim=2)
    right = torch.where(ink, coords.view(1, 1, -1), -big).amax(dim=2)
    # Rows without ink repeat the first inked row's extremes so every set has 2C points.
    first = rows.float().argmax(dim=1)
    ys = coords.view(1, -1).expand_as(left)
    pick = torch.where(rows, torch.arange(_CANVAS).view(1, -1), first.view(-1, 1))
    left, right, ys = (t.gather(1, pick) for t in (left, right, ys))
    points = torch.cat([torch.stack([left, ys], 2), torch.stack([right, ys], 2)], dim=1)
    return blurred, torch.tensor(labels), com, points


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _warps(n: int, generator: torch.Generator) -> Tensor:
    """Per-sample linear warps (n, 2, 2): rotation, shear (slant) and aspect."""
    angle = _uniform(n, -12.0, 12.0, generator) * math.pi / 180
    shear = _uniform(n, -0.35, 0.25, generator)
    aspect = torch.exp(_uniform(n, math.log(0.7), math.log(1.2), generator))
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shr = torch.zeros(n, 2, 2)
    shr[:, 0, 0], shr[:, 0, 1], shr[:, 1, 1] = aspect, shear, 1.0
    return rot @ shr


def _font_digits(labels: Tensor, warp: Tensor, shift: Tensor, generator: torch.Generator) -> Tensor:
    """Font glyphs of ``labels``, warped and framed like MNIST: (n, 1, 28, 28) in [0, 1]."""
    images, t_labels, t_com, t_points = _templates()
    n = labels.numel()
    # A template of the right digit for every sample.
    counts = torch.bincount(t_labels, minlength=10)
    starts = torch.cumsum(counts, 0) - counts  # templates are sorted by digit
    idx = starts[labels] + (torch.rand(n, generator=generator) * counts[labels]).long()

    # MNIST framing: fit the warped bounding box into 20x20, centre the centre of mass.
    pts = t_points[idx] @ warp.transpose(1, 2)  # (n, P, 2)
    extent = (pts.amax(1) - pts.amin(1)).amax(1).clamp_min(1.0)
    scale = _BOX / extent  # output pixels per template pixel
    centre = (t_com[idx].unsqueeze(1) @ warp.transpose(1, 2)).squeeze(1)  # (n, 2)

    # Output -> template map, as affine_grid's theta (normalised coordinates, both sides):
    # output pixels o (around the centre), v = (o - shift) / s + c, u = M^-1 v.
    inv = torch.linalg.inv(warp) / (_CANVAS / 2)
    lin = inv * (_SIDE / 2) / scale.view(n, 1, 1)
    off = inv @ (centre - shift / scale.view(n, 1)).unsqueeze(2)
    hi = _SIDE * _HI
    grid = F.affine_grid(torch.cat([lin, off], 2), [n, 1, hi, hi], align_corners=False)
    # A smooth elastic displacement of up to about a pixel (given in output pixels).
    field = torch.randn(n, 2, 4, 4, generator=generator)
    field = field - field.mean(dim=(2, 3), keepdim=True)  # no net shift: keeps the centring
    field = field * _uniform(n, 0.0, 1.2, generator).view(n, 1, 1, 1)
    field = F.interpolate(field, size=(hi, hi), mode="bilinear", align_corners=True)
    a = (inv / scale.view(n, 1, 1)).view(n, 2, 2, 1, 1)
    dx = a[:, 0, 0] * field[:, 0] + a[:, 0, 1] * field[:, 1]
    dy = a[:, 1, 0] * field[:, 0] + a[:, 1, 1] * field[:, 1]
    grid = grid + torch.stack([dx, dy], dim=-1)
    x = F.grid_sample(images[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # Stroke width: threshold the blurred glyph lower (thicker) or higher (thinner).
    level = _uniform(n, 0.25, 0.5, generator).view(n, 1, 1, 1)
    x = ((x - level) / 0.25).clamp(0.0, 1.0)
    return F.avg_pool2d(x, _HI)  # (n, 1, 28, 28), anti-aliased


def _render_batch(labels: Tensor, generator: torch.Generator) -> Tensor:
    n = labels.numel()
    warp = _warps(n, generator)
    # Like MNIST, the centre of mass lands in pixel (14, 14), anywhere inside it.
    shift = _uniform(2 * n, 0.0, 1.0, generator).view(n, 2)
    pen = torch.rand(n, generator=generator) < _PEN_SHARE
    x = torch.empty(n, 1, _SIDE, _SIDE)
    for mask, draw in ((pen, stroke_digits), (~pen, _font_digits)):
        if mask.any():
            x[mask] = draw(labels[mask], warp[mask], shift[mask], generator)

    # Blur (per-sample sigma), re-saturate the stroke core, noise.
    sigma = _uniform(n, 0.05, 0.6, generator)
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-(taps.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    k2 = (kernel.unsqueeze(2) * kernel.unsqueeze(1)).unsqueeze(1)  # (n, 1, 5, 5)
    x = F.conv2d(x.view(1, n, _SIDE, _SIDE), k2, padding=2, groups=n).view(n, 1, _SIDE, _SIDE)
    peak = x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    gain = _uniform(n, 1.1, 1.6, generator).view(n, 1, 1, 1)
    x = (x / peak * gain).clamp(0.0, 1.0)
    noise = torch.randn(x.shape, generator=generator) * _uniform(n, 0.0, 0.04, generator).view(
        n, 1, 1, 1
    )
    return (x + noise).clamp(0.0, 1.0)


def render_digits(labels: Tensor, generator: torch.Generator, *, chunk: int = 1000) -> Tensor:
    """Render one MNIST-like digit per label: float images (N, 1, 28, 28) in [0, 1].

    Deterministic for the generator's state; draws from ``generator`` only.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> images = render_digits(torch.arange(10), g)
        >>> images.shape, float(images.min()) >= 0.0, float(images.max()) <= 1.0
        (torch.Size([10, 1, 28, 28]), True, True)
    """
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.numel() and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"digit labels must be in 0..9, got {labels.unique().tolist()}")
    parts = [
        _render_batch(labels[i : i + chunk], generator) for i in range(0, labels.numel(), chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, 1, _SIDE, _SIDE)
