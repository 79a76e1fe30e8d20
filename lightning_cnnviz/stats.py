"""Pure activation statistics: per-channel counts, dead and dormant masks, device accumulators.

Nothing here knows about Lightning. The shape follows torchmetrics: a pure
``batch_stats`` (one batch's contribution), ``merge`` (add it to a running
state), ``compute_stats`` (the figures) and a small class, ``ActivationStats``,
that holds the state of one layer (call site) on the layer's device. The host
sees the numbers once per log, through ``to_host`` (one transfer for many
tensors); ``all_reduce_states`` combines the states of all ranks with two
collectives (sums and maxima).

A channel (conv) or unit (linear) is *active* on an entry when its output is
``> eps`` (rectifiers, and pre-activations read as "is it ever positive"), or
``|output| > eps`` for zero-centred activations (Tanh, Hardtanh, Softsign). It is
*dead* when it is active on no entry of the accumulated window, and *dormant*
when its mean ``|a|`` is below ``tau`` times the layer's mean ``|a|``.

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

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "MAX_KEYS",
    "SUM_KEYS",
    "SYMMETRIC_TYPES",
    "ActivationStats",
    "all_reduce_states",
    "batch_stats",
    "compute_stats",
    "dead_mask",
    "dormant_mask",
    "merge",
    "new_state",
    "output_bounds",
    "strip_append",
    "strip_column",
    "to_host",
]

# Per channel: entries where active, sum of |a|. Per layer: entries per channel,
# sum, sum of squares, zero entries, non-finite entries, saturated entries.
SUM_KEYS = ("active", "abs_sum", "count", "sum", "sumsq", "zeros", "nonfinite", "saturated")
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


def batch_stats(
    x: Tensor,
    *,
    channel_dim: int = 1,
    eps: float = 0.0,
    symmetric: bool = False,
    bounds: tuple[float, float] | None = None,
) -> dict[str, Tensor]:
    """One batch's contribution to the state (all reductions on ``x``'s device, no sync).

    Args:
        x: a layer output, ``(N, C, ...)`` for ``channel_dim=1`` or ``(..., C)`` for ``-1``.
        channel_dim: the channel axis.
        eps: activity threshold.
        symmetric: active means ``|a| > eps`` instead of ``a > eps``.
        bounds: output range of a saturating activation, to count saturated entries.
    """
    x = x.detach()
    x = x.float() if x.dtype != torch.float32 else x
    if x.dim() < 2:
        x = x.unsqueeze(0)
    dim = channel_dim % x.dim()
    dims = [i for i in range(x.dim()) if i != dim]
    dtype = _acc_dtype(x.device)
    magnitude = x.abs()
    active = (magnitude if symmetric else x) > eps
    out = {
        "active": active.sum(dims, dtype=dtype),
        "abs_sum": magnitude.sum(dims, dtype=dtype),
        "count": torch.tensor(x.numel() // max(x.shape[dim], 1), dtype=dtype, device=x.device),
        "sum": x.sum(dtype=dtype),
        "sumsq": (x * x).sum(dtype=dtype),
        "zeros": (magnitude <= eps).sum(dtype=dtype),
        "nonfinite": (~torch.isfinite(x)).sum(dtype=dtype),
        "max_abs": magnitude.amax().to(dtype)
        if x.numel()
        else torch.zeros((), dtype=dtype, device=x.device),
    }
    if bounds is not None:
        low, high = bounds
        margin = _SATURATION_MARGIN * (high - low)
        out["saturated"] = ((x <= low + margin) | (x >= high - margin)).sum(dtype=dtype)
    else:
        out["saturated"] = torch.zeros((), dtype=dtype, device=x.device)
    return out


def merge(state: dict[str, Tensor], batch: Mapping[str, Tensor]) -> None:
    """Add one batch's contribution into ``state`` in place (sums add, maxima take the max)."""
    for key in SUM_KEYS:
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
        "zero_fraction": state["zeros"] / entries,
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


class ActivationStats:
    """Running statistics of one layer's output, per channel, on the layer's device.

    Args:
        channels: number of channels (units); the state is allocated at once when
            given, else on the first ``update``.
        channel_dim: the channel axis of the outputs (1 for conv, -1 for linear).
        eps: activity threshold.
        symmetric: active means ``|a| > eps`` (Tanh-like) instead of ``a > eps``.
        bounds: output range for the saturation share (Sigmoid/Tanh), else None.
        device: where the state lives.
    """

    def __init__(
        self,
        channels: int | None = None,
        *,
        channel_dim: int = 1,
        eps: float = 0.0,
        symmetric: bool = False,
        bounds: tuple[float, float] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.channel_dim = channel_dim
        self.eps = eps
        self.symmetric = symmetric
        self.bounds = bounds
        self.channels = channels
        self.device = torch.device(device)
        self.state: dict[str, Tensor] = {}
        self.reset()

    def reset(self) -> None:
        """Zero the state (kept allocated when the channel count is known)."""
        self.state = new_state(self.channels, self.device) if self.channels else {}

    def update(self, x: Tensor) -> None:
        """Accumulate one output tensor (no host sync)."""
        batch = batch_stats(
            x, channel_dim=self.channel_dim, eps=self.eps, symmetric=self.symmetric,
            bounds=self.bounds,
        )  # fmt: skip
        if not self.state:
            self.channels, self.device = batch["active"].numel(), x.device
            self.state = new_state(self.channels, self.device)
        merge(self.state, batch)

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


def strip_column(active_share: Tensor, max_rows: int = 256) -> Tensor:
    """One dead-strip column: per-channel active share as uint8, at most ``max_rows`` rows.

    Wider layers are shown in groups of consecutive channels (mean share per group).
    A channel that is active at all gets at least 1, so only dead channels are 0.

    Example::

        >>> strip_column(torch.tensor([0.0, 1.0, 0.001])).tolist()
        [0, 255, 1]
    """
    share = active_share.detach().float().cpu().clamp(0, 1).nan_to_num(0.0)
    if share.numel() > max_rows:
        group = -(-share.numel() // max_rows)
        pad = group * max_rows - share.numel()
        share = torch.cat([share, share.new_full((pad,), float("nan"))]).view(max_rows, group)
        share = share.nanmean(dim=1).nan_to_num(0.0)
    column = (share * 255).round()
    column = torch.where((share > 0) & (column < 1), torch.ones_like(column), column)
    return column.to(torch.uint8)


def strip_append(history: Tensor | None, column: Tensor, max_columns: int = 256) -> Tensor:
    """Append a column to a ``(rows, time)`` uint8 history, keeping the last ``max_columns``.

    A column of a different height (the layer changed) restarts the history.

    Example::

        >>> h = strip_append(None, torch.tensor([0, 255], dtype=torch.uint8))
        >>> strip_append(h, torch.tensor([9, 9], dtype=torch.uint8), max_columns=1).tolist()
        [[9], [9]]
    """
    column = column.reshape(-1, 1)
    if history is None or history.shape[0] != column.shape[0]:
        return column.clone()
    return torch.cat([history, column], dim=1)[:, -max_columns:]
