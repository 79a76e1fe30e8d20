"""Pure activation statistics: per-channel counts, dead and dormant masks, device accumulators.

Nothing here knows about Lightning. The shape follows torchmetrics: a pure
``batch_stats`` (one batch's contribution), ``merge`` (add it to a running
state), ``compute_stats`` (the figures) and a small class, ``ActivationStats``,
that holds the state of one layer (call site) on the layer's device. Inside a
forward hook every op costs (the caches are cold after the layer's own kernels),
so ``ActivationStats.update`` keeps a batch as ``batch_parts`` (a few reductions per
1 MB slice, not yet added up) and ``fold`` adds a window's parts up when the state
is read. The host sees the numbers once per log, through ``to_host`` (one transfer
for many tensors); ``all_reduce_states`` combines the states of all ranks with two
collectives (sums and maxima).

A channel (conv) or unit (linear) is *active* on an entry when its output is
``> eps`` (rectifiers, and pre-activations read as "is it ever positive"), or
``|output| > eps`` for zero-centred activations (Tanh, Hardtanh, Softsign). It is
*dead* when it is active on no entry of the accumulated window, and *dormant*
when its mean ``|a|`` is below ``tau`` times the layer's mean ``|a|`` (for a
pre-activation: its mean ``max(a, 0)``, what a following ReLU lets through).

Example::

    >>> import torch
    >>> stats = ActivationStats(channels=3)
    >>> stats.update(torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]]))
    >>> out = stats.compute(tau=0.025)
    >>> out["dead"].tolist(), round(float(out["dead_fraction"]), 4)
    ([False, True, False], 0.3333)
    >>> float(out["zero_fraction"]), float(out["max_abs"])
    (0.5, 3.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "CHANNEL_KEYS",
    "FOLD_EVERY",
    "MAX_KEYS",
    "SUM_KEYS",
    "SYMMETRIC_TYPES",
    "ActivationStats",
    "all_reduce_states",
    "batch_parts",
    "batch_stats",
    "compute_stats",
    "dead_mask",
    "dormant_mask",
    "fold",
    "merge",
    "new_state",
    "output_bounds",
    "to_host",
]

# Per channel: entries where active, sum of |a|. Per layer: entries per channel,
# sum, sum of squares, non-zero entries, non-finite entries, saturated entries.
CHANNEL_KEYS = ("active", "abs_sum")
SUM_KEYS = (*CHANNEL_KEYS, "count", "sum", "sumsq", "nonzero", "nonfinite", "saturated")
MAX_KEYS = ("max_abs",)
# Zero-centred activations: active means |a| > eps (every other module: a > eps).
SYMMETRIC_TYPES: tuple[type[nn.Module], ...] = (nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Tanhshrink)
_SATURATION_MARGIN = 0.01  # share of the output range counted as "at the rail"


def output_bounds(module: nn.Module) -> tuple[float, float] | None:
    """The output range of a saturating activation (Sigmoid, Tanh, hard variants), else None.

    Example::

        >>> output_bounds(nn.Tanh()), output_bounds(nn.ReLU())
        ((-1.0, 1.0), None)
    """
    if isinstance(module, nn.Sigmoid | nn.Hardsigmoid):
        return 0.0, 1.0
    if isinstance(module, nn.Tanh):
        return -1.0, 1.0
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return float(module.min_val), float(module.max_val)
    return None


def _acc_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def new_state(channels: int, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """An all-zero state for a layer of ``channels`` channels, on ``device``."""
    device = torch.device(device)
    dtype = _acc_dtype(device)
    state = {key: torch.zeros((), dtype=dtype, device=device) for key in SUM_KEYS + MAX_KEYS}
    state["active"] = torch.zeros(channels, dtype=dtype, device=device)
    state["abs_sum"] = torch.zeros(channels, dtype=dtype, device=device)
    return state


Parts = dict[str, list[Tensor | float]]
"""Per state key, values whose sum (maximum for ``MAX_KEYS``) is the key's contribution."""


def batch_stats(
    x: Tensor,
    *,
    channel_dim: int = 1,
    eps: float = 0.0,
    mode: str = "positive",
    bounds: tuple[float, float] | None = None,
    nonnegative: bool = False,
) -> dict[str, Tensor]:
    """One batch's contribution to the state (all reductions on ``x``'s device, no sync).

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

    Example::

        >>> out = batch_stats(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
        >>> out["active"].tolist(), float(out["nonzero"]), float(out["sumsq"])
        ([2.0, 0.0], 2.0, 10.0)
    """
    parts = batch_parts(
        x, channel_dim=channel_dim, eps=eps, mode=mode, bounds=bounds, nonnegative=nonnegative
    )
    return fold(parts)


def batch_parts(
    x: Tensor,
    *,
    channel_dim: int = 1,
    eps: float = 0.0,
    mode: str = "positive",
    bounds: tuple[float, float] | None = None,
    nonnegative: bool = False,
) -> Parts:
    """``batch_stats`` before anything is added up: few ops per batch, ``fold`` adds later.

    A hook pays per op (a cold cache after the layer's own kernels), so a window's
    batches keep their per-slice values and ``fold`` reduces them all at once.
    Same arguments as ``batch_stats``.
    """
    x = x.detach()
    x = x.float() if x.dtype != torch.float32 else x
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
        low, high = bounds
        margin = _SATURATION_MARGIN * (high - low)
        parts["saturated"] = [((x3 <= low + margin) | (x3 >= high - margin)).sum()]
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
    dtype = _acc_dtype(device)
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


def merge(state: dict[str, Tensor], batch: Mapping[str, Tensor]) -> None:
    """Add one batch's contribution into ``state`` in place (sums add, maxima take the max).

    A key the batch lacks adds nothing (``saturated`` exists for saturating activations only).
    """
    for key in SUM_KEYS:
        if key in batch:
            state[key].add_(batch[key])
    for key in MAX_KEYS:
        torch.maximum(state[key], batch[key], out=state[key])


def dead_mask(active: Tensor) -> Tensor:
    """Channels never active over the window: ``active == 0``."""
    return active == 0


def dormant_mask(abs_sum: Tensor, count: Tensor, tau: float) -> Tensor:
    """Channels whose mean ``|a|`` is below ``tau`` times the layer's mean ``|a|``.

    A layer whose every output is zero is dormant in every channel.

    Example::

        >>> dormant_mask(torch.tensor([10.0, 0.1, 5.0]), torch.tensor(2.0), 0.025).tolist()
        [False, True, False]
    """
    channel_mean = abs_sum / count.clamp_min(1)
    layer_mean = channel_mean.mean()
    return (channel_mean < tau * layer_mean) | (layer_mean == 0)


def compute_stats(state: Mapping[str, Tensor], tau: float) -> dict[str, Tensor]:
    """The figures of one layer, still on the device (float32 scalars and per-channel vectors).

    Returns ``dead`` and ``dormant`` masks and ``active_share`` per channel, and
    ``dead_fraction``, ``dormant_fraction``, ``zero_fraction``, ``mean``, ``std``,
    ``max_abs``, ``nonfinite``, ``saturation`` and ``count`` (entries per channel).
    """
    count = state["count"]
    channels = state["active"].numel()
    entries = (count * channels).clamp_min(1)
    dead = dead_mask(state["active"])
    dormant = dormant_mask(state["abs_sum"], count, tau)
    mean = state["sum"] / entries
    var = (state["sumsq"] / entries - mean * mean).clamp_min(0)
    out = {
        "dead": dead,
        "dormant": dormant,
        "active_share": state["active"] / count.clamp_min(1),
        "dead_fraction": dead.double().mean(),
        "dormant_fraction": dormant.double().mean(),
        "zero_fraction": (count * channels - state["nonzero"]) / entries,
        "mean": mean,
        "std": var.sqrt(),
        "max_abs": state["max_abs"],
        "nonfinite": state["nonfinite"],
        "saturation": state["saturated"] / entries,
        "count": count,
    }
    return {
        key: value.float() if value.is_floating_point() else value for key, value in out.items()
    }


FOLD_EVERY = 32  # batches kept as parts at most: a window's worth, and bounded memory


class ActivationStats:
    """Running statistics of one layer's output, per channel, on the layer's device.

    Args:
        channels: number of channels (units); the state is allocated at once when
            given, else on the first ``update``.
        channel_dim: the channel axis of the outputs (1 for conv, -1 for linear).
        eps: activity threshold.
        mode: ``"positive"``, ``"magnitude"`` or ``"preactivation"`` (see ``batch_stats``).
        bounds: output range for the saturation share (Sigmoid/Tanh), else None.
        nonnegative: outputs are ``>= 0`` wherever finite (ReLU, ReLU6).
        device: where the state lives.
    """

    def __init__(
        self,
        channels: int | None = None,
        *,
        channel_dim: int = 1,
        eps: float = 0.0,
        mode: str = "positive",
        bounds: tuple[float, float] | None = None,
        nonnegative: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.channel_dim, self.nonnegative = channel_dim, nonnegative
        self.eps = eps
        self.mode = mode
        self.bounds = bounds
        self.channels = channels
        self.device = torch.device(device)
        self._state: dict[str, Tensor] = {}
        self._parts: dict[str, list[Tensor | float]] = {}
        self._pending = 0  # batches in ``_parts``, not yet in the state
        self.reset()

    @property
    def state(self) -> dict[str, Tensor]:
        """The running state (``new_state``'s keys), with every pending batch added in."""
        if self._pending:
            self._state = self._state or new_state(self.channels, self.device)
            merge(self._state, fold(self._parts))
            self._parts, self._pending = {}, 0
        return self._state

    def reset(self) -> None:
        """Zero the state (kept allocated when the channel count is known)."""
        self._state = new_state(self.channels, self.device) if self.channels else {}
        self._parts, self._pending = {}, 0

    def update(self, x: Tensor) -> None:
        """Accumulate one output tensor (no host sync).

        The batch's ``batch_parts`` wait to be added up with the others when the state
        is read (every ``FOLD_EVERY`` batches at the latest): a hook's cost is per op.
        """
        parts = batch_parts(
            x, channel_dim=self.channel_dim, eps=self.eps, mode=self.mode,
            bounds=self.bounds, nonnegative=self.nonnegative,
        )  # fmt: skip
        width = parts["active"][0].numel()
        if self.channels is None:
            self.channels, self.device = width, x.device
        elif width != self.channels:  # caught here, not later when the parts are added up
            raise ValueError(f"expected {self.channels} channels, got an output with {width}")
        for key, values in parts.items():
            self._parts.setdefault(key, []).extend(values)
        self._pending += 1
        if self._pending >= FOLD_EVERY:
            self.state  # noqa: B018 (the property adds the pending batches in)

    def compute(self, tau: float = 0.025) -> dict[str, Tensor]:
        """The layer's figures (see ``compute_stats``), on the device."""
        return compute_stats(self.state, tau)


def _dist_ready() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_states(states: Sequence[dict[str, Tensor]]) -> None:
    """Combine the states of all ranks in place: one SUM and one MAX collective.

    Every rank must call it at the same point with states of the same shapes.
    A unit active on any rank has a positive summed ``active`` count, so it is
    alive everywhere. No-op without an initialised process group of size > 1.
    """
    if not _dist_ready() or not states:
        return
    dist = torch.distributed
    for keys, op in ((SUM_KEYS, dist.ReduceOp.SUM), (MAX_KEYS, dist.ReduceOp.MAX)):
        parts = [state[key].reshape(-1) for state in states for key in keys]
        flat = torch.cat(parts)
        dist.all_reduce(flat, op=op)
        offset = 0
        for state in states:
            for key in keys:
                size = state[key].numel()
                state[key].copy_(flat[offset : offset + size].view_as(state[key]))
                offset += size


def to_host(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Move many small tensors to the CPU with one transfer (float32; masks as 0/1).

    Example::

        >>> out = to_host({"a": torch.tensor([True, False]), "b": torch.tensor(2.5)})
        >>> out["a"].tolist(), float(out["b"])
        ([1.0, 0.0], 2.5)
    """
    if not tensors:
        return {}
    device = next(iter(tensors.values())).device
    parts = [t.detach().to(device, torch.float32).reshape(-1) for t in tensors.values()]
    flat = torch.cat(parts).cpu()
    out, offset = {}, 0
    for (key, tensor), part in zip(tensors.items(), parts, strict=True):
        out[key] = flat[offset : offset + part.numel()].view(tensor.shape)
        offset += part.numel()
    return out
