"""The kernel scalars: spectral high-frequency share, change since the last log, mean size.

Nothing here knows about Lightning. ``hf_energy``, ``relative_change`` and
``mean_abs`` reduce a weight to 0-d tensors on its device (no host sync); the
pictures are drawn in ``kernels/draw.py`` and ``kernels/dense.py``.

**hf_energy.** Each filter (all of its input-channel slices) is seen zero-padded
to ``FFT_SIZE`` (16) taps per spatial axis, so that even a 3x3 kernel has a
spectrum fine enough to split. Its *high-frequency share* is the part of its
spectral energy at a radius above ``cutoff`` cycles per pixel (default 0.25, half
the Nyquist frequency), summed over input channels; ``hf_energy`` is the mean
share over the filters that are not all zero. White noise and a single tap
(delta) give 207/256 = 0.809 in 2-D (the share of the frequency grid outside the
disc), smooth blobs 0.1-0.3, a checkerboard close to 1. Dilation is not applied
(the taps are what is learned). 1x1 kernels have no spatial spectrum:
``hf_energy`` is ``None`` for them.

No FFT is taken: the energy of a slice ``s`` inside a fixed frequency mask ``M``
is the quadratic form ``s^T Q s`` with ``Q[t, t'] = sum_{f in M} cos(2 pi f.(t - t'))``
(Parseval), and the total energy is ``N ||s||^2`` for ``N`` frequency bins. ``Q``
does not depend on the weights, so a filter's energy over all its slices is
``trace(Q G)`` with ``G = S^T S`` the ``taps x taps`` Gram matrix of its slices ``S``:
one batched matmul per layer whose inner dimension is the input channels, two
orders of magnitude cheaper than padded FFTs on ResNets
(``benchmarks/kernel_cost.py``).

Example::

    >>> import torch
    >>> delta = torch.zeros(1, 1, 3, 3)
    >>> delta[0, 0, 1, 1] = 1.0
    >>> round(float(hf_energy(delta)), 6)
    0.808594
    >>> float(hf_energy(torch.ones(1, 1, 3, 3))) < 0.3
    True
    >>> float(relative_change(torch.full((2, 2), 3.0), torch.full((2, 2), 2.0)))
    0.5
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

__all__ = [
    "FFT_SIZE",
    "HF_CUTOFF",
    "hf_energy",
    "high_frequency_form",
    "mean_abs",
    "relative_change",
]

FFT_SIZE = 16  # taps per axis the kernel is zero-padded to (frequency bins per axis)
HF_CUTOFF = 0.25  # cycles per pixel; half the Nyquist frequency


@functools.lru_cache(maxsize=64)
def high_frequency_form(
    kernel: tuple[int, ...], cutoff: float = HF_CUTOFF, device: torch.device | None = None
) -> tuple[Tensor, int]:
    """``(Q, N)``: ``s^T Q s`` is a slice's spectral energy above ``cutoff``, ``N`` the bins.

    ``s`` is a flattened ``kernel``-shaped slice seen zero-padded to
    ``max(FFT_SIZE, k)`` taps per axis; ``N`` is the padded grid's size, so the
    slice's total spectral energy is ``N * ||s||^2``. ``Q`` (float32, on ``device``)
    is built in float64 and cached per kernel shape, cutoff and device.

    Example::

        >>> form, bins = high_frequency_form((3,))
        >>> tuple(form.shape), bins
        ((3, 3), 16)
        >>> round(float(form.trace()) / (3 * bins), 6)  # white noise: 7 of 16 bins
        0.4375
    """
    sizes = [max(FFT_SIZE, k) for k in kernel]
    grids = torch.meshgrid(
        *[torch.fft.fftfreq(n, dtype=torch.float64) for n in sizes], indexing="ij"
    )
    # float64 grid: bins exactly on the cutoff radius reliably count as low
    high = sum(g.square() for g in grids) > cutoff**2 + 1e-12
    freqs = torch.stack([g[high] for g in grids], dim=1)  # (bins in the mask, axes)
    taps = torch.cartesian_prod(*[torch.arange(k, dtype=torch.float64) for k in kernel])
    phase = 2 * math.pi * freqs @ taps.reshape(-1, len(kernel)).T  # (bins, taps)
    # Q = C^T C + S^T S (cos and sin parts of the DFT rows in the mask): real, symmetric, PSD.
    q = phase.cos().T @ phase.cos() + phase.sin().T @ phase.sin()
    return q.to(device=device, dtype=torch.float32), math.prod(sizes)


def hf_energy(weight: Tensor, cutoff: float = HF_CUTOFF) -> Tensor | None:
    """Mean over filters of the spectral energy share above ``cutoff`` cycles/pixel.

    Args:
        weight: a conv weight ``(out, in/groups, *kernel)`` with 1-3 spatial axes.
        cutoff: radius of the low-frequency disc (ball), in cycles per pixel.

    Returns:
        A 0-d float32 tensor on the weight's device, or ``None`` for 1x1 kernels.
    """
    kernel = tuple(weight.shape[2:])
    if not kernel or all(k == 1 for k in kernel):
        return None
    form, bins = high_frequency_form(kernel, float(cutoff), weight.device)
    filters, taps = weight.shape[0], math.prod(kernel)
    w = weight.detach().float().reshape(filters, -1, taps)
    # each filter scaled to a largest tap of 1 (the share is scale-free): squares of large
    # but finite weights overflow float32 (setups hunt 50: NaN at 1e20); its extremes read
    # without a temporary of the layer's size
    low, high = torch.aminmax(w.reshape(filters, -1), dim=1)
    w = w / torch.maximum(-low, high).clamp_min(1e-30).view(filters, 1, 1)
    gram = w.transpose(1, 2) @ w  # (filters, taps, taps): summed over the input slices
    high = (gram * form).sum(dim=(1, 2)).clamp_min(0)  # rounding: Q is PSD
    total = gram.diagonal(dim1=1, dim2=2).sum(dim=1) * bins
    share, live = high / total.clamp_min(1e-30), total > 0
    return (share * live).sum() / live.sum().clamp_min(1)


CHUNK = 1 << 22  # elements per chunk of ``relative_change``'s sums


def relative_change(weight: Tensor, previous: Tensor) -> Tensor:
    """``||W - W_prev|| / ||W_prev||`` (Frobenius), 0-d float32; 0 when both are zero.

    Both scaled by ``W_prev``'s largest entry first: the squares of large but finite
    weights overflow float32 (a diverging run's 1e20 read as inf, then NaN). Summed over
    chunks of ``CHUNK`` elements: a layer-sized temporary per step doubled a frozen
    backbone's memory.

    Example::

        >>> w = torch.tensor([3.0, 4.0])
        >>> float(relative_change(2 * w, w)), float(relative_change(2e30 * w, 1e30 * w))
        (1.0, 1.0)
    """
    w, p = weight.detach().reshape(-1), previous.detach().reshape(-1)
    if not p.numel():
        return torch.zeros((), device=w.device)
    low, high = torch.aminmax(p)  # no temporary of the layer's size
    scale = torch.maximum(-low, high).float().clamp_min(1e-30)
    moved = torch.zeros((), device=w.device)
    size = torch.zeros((), device=w.device)
    for at in range(0, p.numel(), CHUNK):  # temporaries of a chunk, not of the layer
        a, b = w[at : at + CHUNK].float() / scale, p[at : at + CHUNK].float() / scale
        moved = moved + (a - b).square().sum()
        size = size + b.square().sum()
    return moved.sqrt() / size.sqrt().clamp_min(1e-12 / scale)


def mean_abs(weight: Tensor) -> Tensor:
    """Mean absolute weight, 0-d float32 (one pass, no temporary)."""
    w = weight.detach()
    if w.dtype.itemsize > 4:  # float64 ("64-true"): the norm narrows to float32 after
        return (torch.linalg.vector_norm(w, ord=1) / max(1, w.numel())).float()
    return torch.linalg.vector_norm(w, ord=1, dtype=torch.float32) / max(1, w.numel())
