"""The kernel scalars: spectral high-frequency share, change since the last log, mean size.

Nothing here knows about Lightning. ``hf_energy``, ``relative_change`` and
``mean_abs`` reduce a weight to 0-d tensors on its device (no host sync); the
pictures are drawn in ``kernels/draw.py`` and ``kernels/dense.py``.

**hf_energy.** Each filter (all of its input-channel slices) is zero-padded to
``FFT_SIZE`` (16) taps per spatial axis, so that even a 3x3 kernel has a spectrum
fine enough to split, and transformed with an N-d FFT. Its *high-frequency
share* is the part of its spectral energy at a radius above ``cutoff`` cycles
per pixel (default 0.25, half the Nyquist frequency), summed over input
channels; ``hf_energy`` is the mean share over the filters that are not all
zero. White noise and a single tap (delta) give 207/256 = 0.809 in 2-D (the
share of the frequency grid outside the disc), smooth blobs 0.1-0.3, a
checkerboard close to 1. Dilation is not applied (the taps are what is learned).
1x1 kernels have no spatial spectrum: ``hf_energy`` is ``None`` for them.

Example::

    >>> import torch
    >>> delta = torch.zeros(1, 1, 3, 3)
    >>> delta[0, 0, 1, 1] = 1.0
    >>> float(hf_energy(delta))
    0.80859375
    >>> float(hf_energy(torch.ones(1, 1, 3, 3))) < 0.3
    True
    >>> float(relative_change(torch.full((2, 2), 3.0), torch.full((2, 2), 2.0)))
    0.5
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["FFT_SIZE", "HF_CUTOFF", "hf_energy", "mean_abs", "relative_change"]

FFT_SIZE = 16  # taps per axis the kernel is zero-padded to before the FFT
HF_CUTOFF = 0.25  # cycles per pixel; half the Nyquist frequency
_FFT_BUDGET = 1 << 22


def _spatial_dims(weight: Tensor) -> tuple[int, ...]:
    return tuple(range(2, weight.dim()))


def hf_energy(weight: Tensor, cutoff: float = HF_CUTOFF) -> Tensor | None:
    """Mean over filters of the spectral energy share above ``cutoff`` cycles/pixel.

    Args:
        weight: a conv weight ``(out, in/groups, *kernel)`` with 1-3 spatial axes.
        cutoff: radius of the low-frequency disc (ball), in cycles per pixel.

    Returns:
        A 0-d float32 tensor on the weight's device, or ``None`` for 1x1 kernels.
    """
    dims = _spatial_dims(weight)
    if not dims or all(weight.shape[d] == 1 for d in dims):
        return None
    w = weight.detach().float()
    sizes = [max(FFT_SIZE, weight.shape[d]) for d in dims]
    grids = torch.meshgrid(*[torch.fft.fftfreq(n, device=w.device) for n in sizes], indexing="ij")
    high = sum(g.square() for g in grids) > cutoff**2 + 1e-12
    # Chunk over filters so that a wide layer never holds more than ~4M spectrum entries.
    chunk = max(1, _FFT_BUDGET // max(1, w.shape[1] * math.prod(sizes)))
    shares, alive = [], []
    for part in w.split(chunk):
        power = torch.fft.fftn(part, s=sizes, dim=dims).abs().square().sum(dim=1)
        total = power.flatten(1).sum(1)
        shares.append((power * high).flatten(1).sum(1) / total.clamp_min(1e-30))
        alive.append(total > 0)
    share, live = torch.cat(shares), torch.cat(alive)
    return (share * live).sum() / live.sum().clamp_min(1)


def relative_change(weight: Tensor, previous: Tensor) -> Tensor:
    """``||W - W_prev|| / ||W_prev||`` (Frobenius), 0-d float32; 0 when both are zero."""
    w, p = weight.detach().float(), previous.detach().float()
    return torch.linalg.vector_norm(w - p) / torch.linalg.vector_norm(p).clamp_min(1e-12)


def mean_abs(weight: Tensor) -> Tensor:
    """Mean absolute weight, 0-d float32."""
    return weight.detach().float().abs().mean()
