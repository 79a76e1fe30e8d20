"""One batch's contribution to a layer's activation statistics, as a hook computes it.

``stats`` keeps a running state per layer (``SUM_KEYS`` add up, ``MAX_KEYS`` take
the maximum); this module says what one output tensor adds to it. Inside a forward
hook every op is paid with cold caches (after the layer's own kernels), so
``batch_parts`` runs few ops: on the CPU one pass for the range (read back: NaN/Inf
take the exact, boolean-mask way), then three or four reductions per 1 MB slice of
samples, kept unreduced; ``fold`` adds the parts of a whole window up at once, in
float64. ``batch_stats`` is both for one batch.

Example::

    >>> x = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    >>> parts = batch_parts(x)
    >>> [len(parts[key]) for key in ("active", "sumsq")]  # one slice
    [1, 1]
    >>> fold(parts)["active"].tolist(), float(batch_stats(x)["sumsq"])
    ([2.0, 0.0], 10.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core.real_values import real_values

__all__ = [
    "CHANNEL_KEYS",
    "MAX_KEYS",
    "SUM_KEYS",
    "Parts",
    "accumulator_dtype",
    "batch_parts",
    "batch_stats",
    "fold",
]

# Per channel: entries where active, sum of |a|. Per layer: entries per channel,
# sum, sum of squares, non-zero entries, non-finite entries, saturated entries.
CHANNEL_KEYS = ("active", "abs_sum")
SUM_KEYS = (*CHANNEL_KEYS, "count", "sum", "sumsq", "nonzero", "nonfinite", "saturated")
MAX_KEYS = ("max_abs",)
_SATURATION_MARGIN = 0.01  # share of the output range counted as "at the rail"


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for the running sums (exact counts past 2**24), float32 where it is missing (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


Parts = dict[str, list[Tensor | float]]
"""Per state key, values whose sum (maximum for ``MAX_KEYS``) is the key's contribution."""


def batch_stats(x: Tensor, **options: Any) -> dict[str, Tensor]:
    """One batch's contribution to the state (all reductions on ``x``'s device, no sync).

    ``fold(batch_parts(x, **options))``: the same arguments as ``batch_parts``.

    Example::

        >>> out = batch_stats(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
        >>> out["active"].tolist(), float(out["nonzero"]), float(out["sumsq"])
        ([2.0, 0.0], 2.0, 10.0)
    """
    return fold(batch_parts(x, **options))


def batch_parts(
    x: Tensor,
    *,
    channel_dim: int = 1,
    eps: float = 0.0,
    mode: str = "positive",
    bounds: tuple[float, float] | None = None,
    nonnegative: bool = False,
) -> Parts:
    """One batch's contribution before anything is added up: ``fold`` adds it later.

    A hook pays per op (a cold cache after the layer's own kernels), so a window's
    batches keep their per-slice values and ``fold`` reduces them all at once.

    Args:
        x: a layer output, ``(N, C, ...)`` for ``channel_dim=1`` or ``(..., C)`` for ``-1``.
        channel_dim: the channel axis.
        eps: activity threshold.
        mode: ``"positive"`` (rectifier-like activation: active = ``a > eps``),
            ``"magnitude"`` (zero-centred activation: active = ``|a| > eps``) or
            ``"preactivation"`` (a conv/BN/linear output read as a ReLU input: active =
            ``a > eps``, and dormancy and zeros measured on ``max(a, 0)``).
        bounds: output range of a saturating activation, to count saturated entries.
        nonnegative: ``x`` is known to be ``>= 0`` wherever finite (the output of a
            ReLU or ReLU6), so no minimum is taken on the fast path.
    """
    x = real_values(x.detach())  # complex outputs as magnitudes (setups hunt 48)
    if x.dim() < 2:
        x = x.unsqueeze(0)
    dim = channel_dim % x.dim()
    # (before, C, after): a view for the usual layouts, so the per-channel sums run over
    # two axes of one contiguous block; one batch's sums are float32 (Torch sums pairwise),
    # ``fold`` adds them up in float64
    channels = x.shape[dim]
    x3 = x.reshape(math.prod(x.shape[:dim]), channels, math.prod(x.shape[dim + 1 :]))
    parts: Parts = {"count": [x.numel() // max(channels, 1)], "nonfinite": [0]}
    # On the CPU reading back costs no device sync: all-finite batches (the usual case)
    # take the float path, several times faster than boolean masks
    fast = _finite_parts(x3, eps, mode, nonnegative) if x.device.type == "cpu" else None
    if fast is None:
        flat = x3.flatten()
        exact = _exact_counts(x3, eps, mode) | {"sumsq": torch.dot(flat, flat)}
        fast = {key: [value] for key, value in exact.items()}
    parts.update(fast)
    if bounds is not None:
        low, high = bounds  # low -inf: a capped rectifier's top alone counts
        margin = _SATURATION_MARGIN * (high - low if math.isfinite(low) else abs(high))
        top = x3 >= high - margin
        parts["saturated"] = [(top | (x3 <= low + margin) if math.isfinite(low) else top).sum()]
    return parts


def fold(parts: Mapping[str, Sequence[Tensor | float]]) -> dict[str, Tensor]:
    """Add up ``Parts`` (of one batch or many) into one contribution, in the state's dtype.

    Per-channel keys (``CHANNEL_KEYS``) add their vectors; the other keys add (or, for
    ``MAX_KEYS``, take the maximum of) every entry of their values, numbers included.

    Example::

        >>> fold({"active": [torch.ones(2), torch.ones(2)], "sum": [torch.ones(2), 3]})
        {'active': tensor([2., 2.], dtype=torch.float64), 'sum': tensor(5., dtype=torch.float64)}
    """
    device = parts["active"][0].device
    dtype = accumulator_dtype(device)
    out = {}
    for key, values in parts.items():
        if key in CHANNEL_KEYS:  # float64 before adding: counts stay exact past 2**24
            out[key] = torch.stack(values).to(dtype).sum(0)
            continue
        reduce = torch.amax if key in MAX_KEYS else torch.sum
        by_shape: dict[tuple[int, ...], list[Tensor]] = {}
        numbers = []
        for value in values:
            if isinstance(value, Tensor):
                by_shape.setdefault(tuple(value.shape), []).append(value)
            else:
                numbers.append(value)
        totals = [reduce(torch.stack(group).to(dtype)) for group in by_shape.values()]
        if numbers:
            total = max(numbers) if key in MAX_KEYS else sum(numbers)
            totals.append(torch.tensor(total, dtype=dtype, device=device))
        out[key] = totals[0] if len(totals) == 1 else reduce(torch.stack(totals))
    return out


def _exact_counts(x3: Tensor, eps: float, mode: str) -> dict[str, Tensor]:
    """Activity counts with boolean masks: exact for NaN/Inf, branch-free (no sync)."""
    magnitude = _magnitude(x3, mode)
    active = (magnitude if mode == "magnitude" else x3) > eps
    return {
        "active": active.sum((0, 2)),
        "abs_sum": magnitude.sum((0, 2)),
        "sum": x3.sum(),
        # NaN is neither zero nor above ``eps``: counted with the non-zero entries
        "nonzero": x3.numel() - (magnitude <= eps).sum(),
        # x - x is NaN exactly where x is NaN or infinite, and NaN counts as non-zero
        "nonfinite": torch.count_nonzero(x3 - x3),
        "max_abs": x3.abs().amax() if x3.numel() else torch.zeros((), device=x3.device),
    }


_SLICE_ENTRIES = 1 << 18  # 1 MB of float32: a slice's temporaries stay in cache


def _finite_parts(x3: Tensor, eps: float, mode: str, nonnegative: bool) -> Parts | None:
    """The parts of an all-finite, non-empty CPU batch, a slice of samples at a time; else None.

    One pass finds the range (a host branch: NaN/Inf go the exact way); each slice is
    then read while in cache, and the allocator reuses its small temporaries (a
    whole-batch temporary is a fresh mapping, page-faulted in every time). A ReLU's
    output (``>= 0``) takes three reductions per slice and no minimum.
    """
    if not x3.numel():
        return None
    if nonnegative:
        low, high = 0.0, x3.amax().item()
    else:
        low, high = (v.item() for v in torch.aminmax(x3))
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    nonnegative = low >= 0  # then |a| = max(a, 0) = a in every mode: no copy, fewer sums
    out: Parts = {"sumsq": [], "abs_sum": [], "active": [], "max_abs": [max(-low, high)]}
    sums, nonzero = [], []
    for part in x3.split(max(1, _SLICE_ENTRIES // max(1, x3[0].numel()))):
        flat = part.flatten()
        out["sumsq"].append(torch.dot(flat, flat))
        magnitude = part if nonnegative else _magnitude(part, mode)
        out["abs_sum"].append(magnitude.sum((0, 2)))
        active = _count_above(magnitude if mode == "magnitude" else part, eps, nonnegative)
        out["active"].append(active)
        if not nonnegative:
            sums.append(part.sum())
            if mode == "positive":  # |a| > eps also where a < -eps
                nonzero.append(_count_above(magnitude, eps, True))
    # with a >= 0 the sum is the channels' sum of |a|; unless |a| > eps can hold where the
    # unit is inactive (a signed output read as a rectifier's), non-zero means active
    out["sum"] = out["abs_sum"] if nonnegative else sums
    out["nonzero"] = nonzero or out["active"]
    return out


def _count_above(x3: Tensor, eps: float, nonnegative: bool) -> Tensor:
    """Per channel of finite ``(before, C, after)`` entries, how many exceed ``eps`` (float)."""
    if eps:
        return torch.sign((x3 - eps).clamp_min_(0)).sum((0, 2))  # 0/1 per entry: exact
    return torch.sign(x3 if nonnegative else x3.clamp_min(0)).sum((0, 2))


def _magnitude(x3: Tensor, mode: str) -> Tensor:
    """What dormancy and zeros are measured on: ``max(a, 0)`` for pre-activations, else ``|a|``."""
    return x3.clamp_min(0) if mode == "preactivation" else x3.abs()
