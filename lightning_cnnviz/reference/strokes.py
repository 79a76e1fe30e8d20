"""Handwriting-like digits: pen strokes through jittered control points, drawn with torch.

Each digit has one or more skeletons (lists of strokes through control points in a
box about 0.6 wide and 1 high, y pointing down; a repeated point makes a corner).
Per sample the control points are jittered, the strokes are sampled as Catmull-Rom
splines, warped (rotation, slant, aspect), fitted into MNIST's 20x20 box, centred by
their centre of mass, and drawn with a random pen width as a distance field.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SKELETONS", "stroke_digits"]

_Stroke = list[tuple[float, float]]

# Skeletons per digit, one string per variant: strokes separated by "|", control points
# "x,y" in a box about 0.6 wide and 1 high (y down); a repeated point makes a corner.
_SKELETON_TEXT = {
    0: (
        "0.3,0 0.05,0.2 0.02,0.55 0.15,0.92 0.35,1 0.55,0.8 0.6,0.4 0.5,0.08 0.3,0 0.05,0.2",
        "0.4,0.02 0.15,0.15 0.02,0.6 0.2,1 0.5,0.85 0.62,0.4 0.45,0 0.3,0.05",
    ),
    1: (
        "0.32,0 0.3,0.5 0.28,1",
        "0.12,0.22 0.35,0 0.35,0 0.32,0.5 0.3,1",
    ),
    2: (
        "0.05,0.22 0.3,0 0.55,0.12 0.52,0.4 0.25,0.7 0.03,0.98 0.03,0.98 0.35,0.95 0.65,0.97",
        "0.05,0.2 0.3,0 0.55,0.15 0.45,0.5 0.05,0.95 0.05,0.95 0.2,0.85 0.35,0.95 0.62,1",
        "0.08,0.15 0.35,0 0.55,0.2 0.4,0.55 0.1,0.92 0.25,1 0.3,0.85 0.15,0.85 0.4,0.95 0.65,0.92",
    ),
    3: (
        "0.05,0.12 0.3,0 0.55,0.15 0.45,0.38 0.22,0.47 0.5,0.58 0.6,0.8 0.35,1 0.03,0.88",
        "0.05,0.05 0.5,0.02 0.5,0.02 0.25,0.42 0.25,0.42 0.55,0.6 0.5,0.9 0.25,1 0.03,0.9",
    ),
    4: (
        "0.42,0 0.02,0.65 0.02,0.65 0.65,0.65 | 0.47,0.3 0.45,1",
        "0.1,0 0.05,0.55 0.05,0.55 0.6,0.55 | 0.5,0.02 0.48,1",
    ),
    5: (
        "0.6,0 0.12,0.02 | 0.12,0.02 0.08,0.45 0.08,0.45 0.35,0.38 0.58,0.55 0.55,0.85 0.3,1"
        " 0.02,0.88",
        "0.12,0.02 0.1,0.42 0.1,0.42 0.4,0.4 0.55,0.65 0.4,0.95 0.05,0.92 | 0.12,0.02 0.58,0",
    ),
    6: (
        "0.5,0 0.22,0.3 0.05,0.68 0.18,0.97 0.45,0.97 0.58,0.75 0.45,0.55 0.2,0.58 0.07,0.72",
        "0.55,0 0.3,0.25 0.12,0.55 0.1,0.85 0.3,1 0.52,0.88 0.52,0.7 0.32,0.62 0.12,0.78",
    ),
    7: (
        "0.02,0.02 0.62,0.02 0.62,0.02 0.38,0.5 0.25,1",
        "0.02,0.02 0.62,0.02 0.62,0.02 0.4,0.5 0.28,1 | 0.2,0.52 0.58,0.48",
    ),
    8: (
        "0.55,0.12 0.3,0 0.06,0.15 0.18,0.38 0.45,0.55 0.6,0.8 0.35,1 0.05,0.82 0.18,0.58"
        " 0.45,0.4 0.55,0.12 0.3,0",
    ),
    9: (
        "0.55,0.15 0.3,0 0.05,0.15 0.12,0.4 0.4,0.45 0.58,0.2 0.58,0.2 0.55,0.6 0.48,1",
        "0.55,0.18 0.3,0 0.05,0.15 0.12,0.4 0.4,0.45 0.58,0.2 0.58,0.2 0.58,0.6 0.45,0.9 0.2,1",
        "0.55,0.12 0.35,0 0.1,0.1 0.1,0.32 0.35,0.38 0.55,0.22 0.55,0.22 0.55,0.6 0.55,1",
    ),
}


def _parse(text: str) -> list[_Stroke]:
    return [
        [tuple(float(c) for c in point.split(",")) for point in stroke.split()]
        for stroke in text.split("|")
    ]


#: Skeletons per digit: each a list of strokes, each a list of (x, y) control points.
SKELETONS: dict[int, list[list[_Stroke]]] = {
    digit: [_parse(text) for text in variants] for digit, variants in _SKELETON_TEXT.items()
}
_PER_SPAN = 4  # spline samples per control-point span
_SIDE = 28


def _spline(points: Tensor) -> Tensor:
    """Catmull-Rom samples (N, (K-1)*_PER_SPAN + 1, 2) through control points (N, K, 2)."""
    p = torch.cat(
        [2 * points[:, :1] - points[:, 1:2], points, 2 * points[:, -1:] - points[:, -2:-1]], 1
    )
    t = torch.arange(_PER_SPAN, dtype=torch.float32) / _PER_SPAN
    t2, t3 = t * t, t * t * t
    w = torch.stack([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], 1) / 2
    k = points.shape[1]
    windows = torch.stack([p[:, i : i + 4] for i in range(k - 1)], 1)  # (N, K-1, 4, 2)
    samples = torch.einsum("sj,nkjd->nksd", w, windows).reshape(points.shape[0], -1, 2)
    return torch.cat([samples, points[:, -1:]], 1)


def _segments(skeleton: list[_Stroke], n: int, jitter: Tensor, g: torch.Generator) -> Tensor:
    """Jittered segments (n, S, 2, 2) of one skeleton, for n samples."""
    parts = []
    for stroke in skeleton:
        points = torch.tensor(stroke, dtype=torch.float32).expand(n, -1, -1)
        noise = torch.randn(n, len(stroke), 2, generator=g) * jitter.view(n, 1, 1)
        # Repeated points (corners) move together.
        same = torch.tensor([i > 0 and stroke[i] == stroke[i - 1] for i in range(len(stroke))])
        for i in torch.nonzero(same).flatten().tolist():
            noise[:, i] = noise[:, i - 1]
        curve = _spline(points + noise)
        parts.append(torch.stack([curve[:, :-1], curve[:, 1:]], 2))
    return torch.cat(parts, 1)


def _draw(seg: Tensor, width: Tensor, soft: Tensor) -> Tensor:
    """Distance-field pen: (n, 1, 28, 28) in [0, 1] from segments (n, S, 2, 2) in pixels."""
    n = seg.shape[0]
    axis = torch.arange(_SIDE, dtype=torch.float32) + 0.5
    px = axis.repeat(_SIDE).view(1, -1, 1)
    py = axis.repeat_interleave(_SIDE).view(1, -1, 1)
    ax, ay = seg[:, None, :, 0, 0], seg[:, None, :, 0, 1]  # (n, 1, S)
    abx, aby = seg[:, None, :, 1, 0] - ax, seg[:, None, :, 1, 1] - ay
    inv = 1.0 / (abx * abx + aby * aby).clamp_min(1e-6)
    apx, apy = px - ax, py - ay  # (n, P, S)
    t = ((apx * abx + apy * aby) * inv).clamp_(0.0, 1.0)
    dx = apx.sub_(t * abx)
    dy = apy.sub_(t * aby)
    dist = (dx.square_() + dy.square_()).amin(-1).sqrt_()  # (n, P)
    ink = ((width.view(n, 1) / 2 - dist) / soft.view(n, 1) + 0.5).clamp(0.0, 1.0)
    return ink.view(n, 1, _SIDE, _SIDE)


def stroke_digits(labels: Tensor, warp: Tensor, shift: Tensor, g: torch.Generator) -> Tensor:
    """Draw one handwriting-like digit per label: (N, 1, 28, 28) in [0, 1].

    ``warp`` (N, 2, 2) is the per-sample linear warp, ``shift`` (N, 2) where in the
    output the centre of mass lands (output pixels from the image centre).
    """
    n = labels.numel()
    out = torch.zeros(n, 1, _SIDE, _SIDE)
    width = 1.4 + 2.0 * torch.rand(n, generator=g)
    soft = 0.7 + 0.8 * torch.rand(n, generator=g)
    jitter = 0.03 + 0.05 * torch.rand(n, generator=g)
    variant = torch.rand(n, generator=g)
    for digit, skeletons in SKELETONS.items():
        for v, skeleton in enumerate(skeletons):
            low, high = v / len(skeletons), (v + 1) / len(skeletons)
            idx = torch.nonzero((labels == digit) & (variant >= low) & (variant < high)).flatten()
            if idx.numel() == 0:
                continue
            seg = _segments(skeleton, idx.numel(), jitter[idx], g)  # (m, S, 2, 2)
            seg = seg @ warp[idx].transpose(1, 2).unsqueeze(1)
            pts = seg.flatten(1, 2)
            box = (pts.amax(1) - pts.amin(1)).amax(1).clamp_min(1e-3)
            scale = (20.0 - width[idx]) / box  # the pen's width is inside the 20x20 box
            mid = seg.mean(2)
            length = (seg[:, :, 1] - seg[:, :, 0]).norm(dim=-1, keepdim=True) + 1e-6
            com = (mid * length).sum(1) / length.sum(1)
            seg = (seg - com.view(-1, 1, 1, 2)) * scale.view(-1, 1, 1, 1)
            seg = seg + (shift[idx] + _SIDE / 2).view(-1, 1, 1, 2)
            for c in range(0, idx.numel(), 256):
                part = idx[c : c + 256]
                out[part] = _draw(seg[c : c + 256], width[part], soft[part])
    return out
