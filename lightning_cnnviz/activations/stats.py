"""Pure activation statistics: per-channel counts, dead and dormant masks, device accumulators.

Nothing here knows about Lightning. The shape follows torchmetrics: a pure
``batch_stats`` (one batch's contribution, from ``reductions``), ``merge`` (add it
to a running state), ``compute_stats`` (the figures) and a small class,
``ActivationStats``, that holds the state of one layer (``recorder`` keeps one per
call site) on the layer's device; its ``update`` keeps a batch as
``reductions.batch_parts`` and adds a window's parts up (``reductions.fold``) when
the state is read. The host sees the numbers once per log, through ``to_host`` (one
transfer for many tensors); ``all_reduce_states`` combines the states of all ranks
with two collectives (sums and maxima).

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

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from lightning_cnnviz.activations.reductions import (
    MAX_KEYS,
    SUM_KEYS,
    accumulator_dtype,
    batch_parts,
    batch_stats,
    fold,
)

__all__ = [
    "FOLD_EVERY",
    "MAX_KEYS",
    "SUM_KEYS",
    "SYMMETRIC_TYPES",
    "ActivationStats",
    "WidthChanged",
    "all_reduce_states",
    "batch_stats",
    "compute_stats",
    "dead_mask",
    "dormant_mask",
    "merge",
    "new_state",
    "output_bounds",
    "to_host",
]

# Zero-centred activations: active means |a| > eps (every other module: a > eps).
SYMMETRIC_TYPES: tuple[type[nn.Module], ...] = (nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Tanhshrink)


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


def new_state(channels: int, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """An all-zero state for a layer of ``channels`` channels, on ``device``."""
    device = torch.device(device)
    dtype = accumulator_dtype(device)
    state = {key: torch.zeros((), dtype=dtype, device=device) for key in SUM_KEYS + MAX_KEYS}
    state["active"] = torch.zeros(channels, dtype=dtype, device=device)
    state["abs_sum"] = torch.zeros(channels, dtype=dtype, device=device)
    return state


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


class WidthChanged(ValueError):
    """A watched layer's output has another channel count than its statistics (surgery)."""


class ActivationStats:
    """Running statistics of one layer's output, per channel, on the layer's device.

    Args:
        channels: number of channels (units); the state is allocated at once when
            given, else on the first ``update``.
        channel_dim: the channel axis of the outputs (1 for conv, -1 for linear).
        eps: activity threshold.
        mode: ``"positive"``, ``"magnitude"`` or ``"preactivation"`` (see
            ``reductions.batch_parts``; ``sites.SiteInfo`` picks it per call site).
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
        self._parts: dict[str, list[Tensor | float]] = {}  # batches not yet in the state

    @property
    def _pending(self) -> int:
        """Batches kept as parts, not yet in the state (each adds one ``count`` part)."""
        return len(self._parts.get("count", ()))

    @property
    def state(self) -> dict[str, Tensor]:
        """The running state (``new_state``'s keys), with every pending batch added in."""
        if self._pending:
            batch = fold(self._parts)  # fresh tensors: after a reset they become the state
            if self._state:
                merge(self._state, batch)
            else:
                self._state = batch
                for key in SUM_KEYS + MAX_KEYS:  # absent from the batch: saturated, maybe
                    if key not in batch:
                        batch[key] = torch.zeros((), dtype=batch["count"].dtype, device=self.device)
            self._parts = {}
        elif not self._state and self.channels:
            self._state = new_state(self.channels, self.device)
        return self._state

    def reset(self) -> None:
        """Zero the state (made again when next read: from the next batches, or zeros)."""
        self._state, self._parts = {}, {}

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
            raise WidthChanged(f"expected {self.channels} channels, got an output with {width}")
        for key, values in parts.items():
            self._parts.setdefault(key, []).extend(values)
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

    CPU tensors need no transfer: they are only converted (float32 ones come back as
    they are).

    Example::

        >>> out = to_host({"a": torch.tensor([True, False]), "b": torch.tensor(2.5)})
        >>> out["a"].tolist(), float(out["b"])
        ([1.0, 0.0], 2.5)
    """
    if not tensors:
        return {}
    device = next(iter(tensors.values())).device
    if device.type == "cpu":  # already there: no gathering into one block and back
        return {key: t.detach().to(torch.float32) for key, t in tensors.items()}
    parts = [t.detach().to(device, torch.float32).reshape(-1) for t in tensors.values()]
    flat = torch.cat(parts).cpu()
    out, offset = {}, 0
    for (key, tensor), part in zip(tensors.items(), parts, strict=True):
        out[key] = flat[offset : offset + part.numel()].view(tensor.shape)
        offset += part.numel()
    return out
