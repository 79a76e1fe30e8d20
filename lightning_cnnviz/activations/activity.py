"""Activations recorded over training: call sites, the window recorder, the dead-unit history.

Builds on the pure statistics of ``stats``: ``trace_sites`` learns each watched
layer's call sites in one probe pass (``SiteInfo``), ``Recorder`` feeds a layer's
``ActivationStats`` from forward hooks on the window's training batches and on the
probe pass, ``gather`` reduces across ranks and moves every figure to the host at once,
and ``DeadHistory`` keeps the dead-strip columns and the dead fractions between logs,
from which ``dead_alerts`` and ``diagnosis_text`` say when units die. Nothing here knows
about Lightning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.activations.stats import (
    SYMMETRIC_TYPES,
    ActivationStats,
    all_reduce_states,
    batch_stats,
    merge,
    new_state,
    output_bounds,
    to_host,
)
from lightning_cnnviz.core.capture import LayerCapture, probe_mode, site_name
from lightning_cnnviz.core.selection import ACTIVATION_TYPES, CONV_TYPES, named_layers

__all__ = [
    "REMEDIES",
    "DeadHistory",
    "Recorder",
    "SiteInfo",
    "batches_to_log",
    "dead_alerts",
    "diagnosis_text",
    "fallback_layers",
    "gather",
    "make_stats",
    "site_scalars",
    "strip_append",
    "strip_column",
    "trace_sites",
    "weight_grad_norm",
]


def strip_column(active_share: Tensor, max_rows: int = 256) -> Tensor:
    """One dead-strip column: per-channel active share as uint8, at most ``max_rows`` rows.

    Wider layers are shown in groups of consecutive channels (mean share per group).
    A channel that is active at all gets at least 1, so only dead channels are 0.

    Example::

        >>> strip_column(torch.tensor([0.0, 1.0, 0.001])).tolist()
        [0, 255, 1]
    """
    share = active_share.detach().float().cpu()
    if share.numel() > max_rows:
        share = share.clamp(0, 1).nan_to_num(0.0)
        group = -(-share.numel() // max_rows)
        rows = -(-share.numel() // group)
        pad = group * rows - share.numel()
        share = torch.cat([share, share.new_full((pad,), float("nan"))]).view(rows, group)
        share = share.nanmean(dim=1)
    # at most max_rows values: plain Python beats a dozen tiny tensor ops (NaN -> 0)
    column = [max(1, round(min(v, 1.0) * 255)) if v > 0 else 0 for v in share.tolist()]
    return torch.tensor(column, dtype=torch.uint8)


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


def _example_state() -> dict[str, Tensor]:
    state = new_state(2)
    merge(state, batch_stats(torch.tensor([[0.0, 1.0], [0.0, 2.0]])))
    return state


_FALLBACK_TYPES = (*CONV_TYPES, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Linear)


def fallback_layers(available: Mapping[str, nn.Module]) -> list[str]:
    """Pre-activation layers to watch when a model has no activation module (``F.relu``).

    Conv, BatchNorm and Linear outputs, read as "is it ever positive"; a conv
    directly followed by a BatchNorm gives way to it (the BN output is what the
    activation sees), and the last of them (the output layer) is left out.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(8, 2))
        >>> fallback_layers(dict(net.named_children()))
        ['1']
    """
    names = list(available)
    picked = [n for n, m in available.items() if isinstance(m, _FALLBACK_TYPES)][:-1]
    return [
        n
        for n in picked
        if not (
            isinstance(available[n], CONV_TYPES)
            and names.index(n) + 1 < len(names)
            and isinstance(available[names[names.index(n) + 1]], nn.modules.batchnorm._BatchNorm)
        )
    ]


@dataclass(frozen=True)
class SiteInfo:
    """What a probe pass taught about one call site of a watched layer.

    Attributes:
        module: the watched module's name.
        producer: the nearest preceding module with a weight matrix (conv, linear)
            in execution order, or the module itself: whose weight gradient to read.
        channel_dim: channel axis of its output (-1 after a linear layer, else 1).
        channels: number of channels (units).
        mode: how activity is read (``batch_stats``): ``"positive"`` for rectifier-like
            activation modules, ``"magnitude"`` for zero-centred ones (Tanh),
            ``"preactivation"`` for any other module (dead = never positive).
        bounds: output range of a saturating activation, else None.
        nonnegative: the output is ``>= 0`` wherever finite (a plain ReLU or ReLU6).
    """

    module: str
    producer: str | None
    channel_dim: int
    channels: int
    mode: str
    bounds: tuple[float, float] | None
    nonnegative: bool = False


def _mode(module: nn.Module) -> str:
    if isinstance(module, SYMMETRIC_TYPES):
        return "magnitude"
    return "positive" if isinstance(module, ACTIVATION_TYPES) else "preactivation"


def _has_weight_matrix(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, Tensor) and weight.dim() >= 2


def trace_sites(
    model: nn.Module, selected: Mapping[str, nn.Module], run: Callable[[], Any]
) -> tuple[dict[str, int], dict[str, SiteInfo]]:
    """Call counts of the selected modules and a ``SiteInfo`` per call site, from one pass.

    ``run`` performs the forward pass (in eval mode, without gradients).

    Example::

        >>> relu = nn.ReLU()
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), relu, nn.Flatten(), nn.Linear(4, 3), relu)
        >>> counts, sites = trace_sites(net, {"1": relu}, lambda: net(torch.zeros(2, 1, 3, 3)))
        >>> counts, [(s, i.producer, i.channel_dim, i.channels) for s, i in sites.items()]
        ({'1': 2}, [('1#0', '0', 1, 4), ('1#1', '3', -1, 3)])
    """
    weighted = {n: m for n, m in named_layers(model).items() if _has_weight_matrix(m)}
    events: list[tuple[str, tuple[int, ...]]] = []
    with (
        probe_mode(model),
        LayerCapture(
            {**weighted, **selected}, on_output=lambda n, out: events.append((n, tuple(out.shape)))
        ),
    ):
        run()
    counts = {name: sum(1 for n, _ in events if n == name) for name in selected}
    shared = {name for name, count in counts.items() if count > 1}
    calls = dict.fromkeys(selected, 0)
    sites: dict[str, SiteInfo] = {}
    producer = None
    for name, shape in events:
        producer = name if name in weighted else producer
        if name not in selected:
            continue
        site = site_name(name, calls[name], shared)
        calls[name] += 1
        module = selected[name]
        linear = isinstance(weighted.get(producer or ""), nn.Linear | nn.Bilinear)
        dim = -1 if linear or len(shape) <= 2 else 1
        sites[site] = SiteInfo(
            name, producer, dim, shape[dim] if shape else 1,
            _mode(module), output_bounds(module), type(module) in (nn.ReLU, nn.ReLU6),
        )  # fmt: skip
    return counts, sites


def batches_to_log(
    global_step: int,
    batch_idx: int,
    accumulate: int,
    num_batches: float,
    every_n_steps: int | None = None,
    epoch_due: bool = False,
) -> tuple[int, int] | None:
    """How many training batches, this one included, until the next logging event.

    Returns ``(to_log, in_accumulation)``: batches until the batch that completes
    the logging step (or ends the epoch, for an epoch schedule), and batches until
    the end of this batch's accumulation (when both are equal, the optimizer step
    that follows this batch is the logging step). ``None`` when no log is ahead
    (epoch schedule, epoch not due or of unknown length). Epoch ends shorten an
    accumulation, so across one the count is an upper bound (never too early).

    Example::

        >>> # every 3 steps, 2 batches per step: batch 4 starts the accumulation of step 3
        >>> batches_to_log(2, 4, accumulate=2, num_batches=8, every_n_steps=3)
        (2, 2)
        >>> batches_to_log(1, 3, accumulate=2, num_batches=8, every_n_steps=3)
        (3, 1)
    """
    finite = num_batches != float("inf")
    if every_n_steps is None:
        if not (epoch_due and finite):
            return None
        left = int(num_batches) - batch_idx
        return left, 1 if left == 1 else 0
    in_accumulation = accumulate - batch_idx % accumulate
    if finite:
        in_accumulation = min(in_accumulation, int(num_batches) - batch_idx)
    target = (global_step // every_n_steps + 1) * every_n_steps
    return in_accumulation + (target - global_step - 1) * accumulate, in_accumulation


def make_stats(
    sites: Mapping[str, SiteInfo], eps: float, device: torch.device | str
) -> dict[str, ActivationStats]:
    """One zeroed ``ActivationStats`` per traced call site, on ``device``."""
    return {
        site: ActivationStats(
            info.channels,
            channel_dim=info.channel_dim,
            eps=eps,
            mode=info.mode,
            bounds=info.bounds,
            nonnegative=info.nonnegative,
            device=device,
        )
        for site, info in sites.items()
    }


def gather(
    stats: Mapping[str, ActivationStats], extra: Mapping[str, Tensor], tau: float
) -> tuple[dict[str, dict[str, Tensor]], dict[str, float]]:
    """Reduce across ranks, compute every site's figures, move them to the host in one transfer.

    Returns ``({site: figures}, {name: float(extra)})`` with the sites that saw no
    data left out, and resets the accumulators.
    """
    all_reduce_states([s.state for s in stats.values()])
    figures = {f"{site}\t{k}": v for site, s in stats.items() for k, v in s.compute(tau).items()}
    figures.update({f"\textra\t{name}": value for name, value in extra.items()})
    host = to_host(figures)
    for s in stats.values():
        s.reset()
    per_site: dict[str, dict[str, Tensor]] = {}
    for key, value in host.items():
        site, name = key.rsplit("\t", 1)
        per_site.setdefault(site, {})[name] = value
    extras = {k: float(v) for k, v in per_site.pop("\textra", {}).items()}
    return {s: f for s, f in per_site.items() if float(f["count"]) > 0}, extras


def weight_grad_norm(module: nn.Module) -> Tensor | None:
    """L2 norm of the gradients of ``module``'s own parameters (read only), or None."""
    grads = [p.grad.detach() for p in module.parameters(recurse=False) if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])
    )


def dead_alerts(
    fractions: Mapping[str, float],
    previous: Mapping[str, float],
    threshold: float,
    rise: float = 0.1,
) -> list[tuple[str, float, float | None]]:
    """Sites whose dead fraction crossed ``threshold`` or rose by over ``rise`` since the last log.

    Example::

        >>> dead_alerts({"a": 0.3, "b": 0.2, "c": 0.3}, {"b": 0.05, "c": 0.28}, 0.25)
        [('a', 0.3, None), ('b', 0.2, 0.05)]
    """
    alerts = []
    for site, fraction in fractions.items():
        before = previous.get(site)
        crossed = fraction >= threshold and (before is None or before < threshold)
        if crossed or (before is not None and fraction - before > rise):
            alerts.append((site, fraction, before))
    return alerts


REMEDIES = (
    "lower the learning rate (units die after too large an update); use LeakyReLU, ELU or GELU; "
    "use He (kaiming) initialisation; put BatchNorm before the activation; check the bias "
    "(a large negative bias switches a unit off for every input)"
)


def diagnosis_text(
    alerts: Sequence[tuple[str, float, float | None]],
    dead: Mapping[str, Sequence[int]],
    step: int,
    epoch: int,
) -> str:
    """The plain-words diagnosis for ``dead_alerts``: layers, fractions, when, what to do.

    Example::

        >>> print(diagnosis_text([("relu1", 0.5, None)], {"relu1": [0, 2]}, 40, 0)[:66])
        Dead units at step 40 (epoch 0): `relu1`: 50% of units dead (0, 2)
    """
    parts = [
        f"`{site}`: {fraction:.0%} of units dead ("
        + ", ".join(map(str, dead[site][:16]))
        + (", ..." if len(dead[site]) > 16 else "")
        + (f"; was {before:.0%} at the last log)" if before is not None else ")")
        for site, fraction, before in alerts
    ]
    return (
        f"Dead units at step {step} (epoch {epoch}): {'; '.join(parts)}. "
        f"Units that never activate get no gradient and stop learning. Try: {REMEDIES}."
    )


_SCALARS = ("dead_fraction", "dormant_fraction", "zero_fraction", "mean", "std", "max_abs")


def site_scalars(
    figures: Mapping[str, Tensor], info: SiteInfo, grads: Mapping[str, float]
) -> dict[str, float]:
    """The scalars logged for one site: ``{"dead_fraction": ..., "grad_norm": ...}``."""
    keys = (*_SCALARS, "nonfinite", *(("saturation",) if info.bounds else ()))
    out = {key: float(figures[key]) for key in keys}
    if info.producer in grads:
        out["grad_norm"] = grads[info.producer]
    return out


class Recorder:
    """Statistics of the watched layers per call site, fed by forward hooks (no Lightning).

    ``trace`` learns the call sites once (one probe pass); ``attach`` hooks the layers
    (through ``LayerCapture``) for training batches until ``detach``, with ``record``
    as ``on_output``: it counts only while ``root.training`` (other monitors'
    eval-mode probe passes are ignored) and never raises into the training step (a
    failure is kept in ``failure``); ``record_probe`` feeds the probe pass (and keeps
    a subsample for histograms); ``read_grads`` reads the producers' weight-gradient
    norms; ``gather`` reduces, computes, moves to the host once, and resets.

    Args:
        eps: activity threshold.
        histograms: keep up to ``4096`` probe values per site for histograms.
    """

    def __init__(self, eps: float = 0.0, histograms: bool = False) -> None:
        self.eps, self.histograms = eps, histograms
        self.sites: dict[str, SiteInfo] = {}
        self.stats: dict[str, ActivationStats] = {}
        self.samples: dict[str, Tensor] = {}
        self.grad_norms: dict[str, Tensor] = {}
        self.root: nn.Module | None = None
        self.failure: Exception | None = None
        self.counts: dict[str, int] = {}
        self.window_seconds = 0.0  # spent in ``record``, read and reset by the monitor
        self._capture: LayerCapture | None = None

    @property
    def shared(self) -> set[str]:
        """Watched modules called more than once per forward pass."""
        return {name for name, count in self.counts.items() if count > 1}

    def trace(self, model: nn.Module, selected: Mapping[str, nn.Module], x: Tensor) -> None:
        """Learn the call sites with one probe pass on ``x`` (call counts, ``SiteInfo``)."""
        self.counts, self.sites = trace_sites(model, selected, lambda: model(x))
        self.stats, self.root = make_stats(self.sites, self.eps, x.device), model

    def attach(self, selected: Mapping[str, nn.Module]) -> None:
        """Hook the watched layers for training batches, until ``detach``."""
        self.detach()
        self._capture = LayerCapture(selected, shared=self.shared, on_output=self.record)
        self._capture.__enter__()

    def detach(self) -> None:
        """Remove the training-batch hooks (idempotent)."""
        if self._capture is not None:
            self._capture.remove()
            self._capture = None

    def record(self, site: str, out: Tensor) -> None:
        """Hook ``on_output`` for training batches (its time adds up in ``window_seconds``)."""
        if self.root is not None and self.root.training and site in self.stats:
            start = time.perf_counter()
            try:  # reduced at once, so a later in-place op (ReLU(inplace=True)) cannot alter it
                self.stats[site].update(out)
            except Exception as err:  # never break the user's training step
                self.failure = err
            self.window_seconds += time.perf_counter() - start

    def probe(self, model: nn.Module, selected: Mapping[str, nn.Module], x: Tensor) -> None:
        """One probe pass on ``x`` (eval mode, flags restored), counted like a window batch."""
        capture = LayerCapture(selected, shared=self.shared, on_output=self.record_probe)
        with probe_mode(model), capture:
            model(x)

    def record_probe(self, site: str, out: Tensor) -> None:
        """Hook ``on_output`` for the probe pass."""
        if site in self.stats:
            self.stats[site].update(out)
        if self.histograms:
            flat = out.detach().reshape(-1)
            self.samples[site] = flat[:: max(1, flat.numel() // 4096)].float().clone()

    def read_grads(self, model: nn.Module) -> None:
        """Keep the weight-gradient norm of every site's producer (reads ``p.grad`` only)."""
        modules = named_layers(model)
        for name in {info.producer for info in self.sites.values() if info.producer}:
            norm = weight_grad_norm(modules[name])
            if norm is not None:
                self.grad_norms[name] = norm

    def gather(self, tau: float) -> tuple[dict[str, dict[str, Tensor]], dict[str, float]]:
        """``gather`` over the sites and the kept gradient norms (then cleared)."""
        out = gather(self.stats, self.grad_norms, tau)
        self.grad_norms = {}
        return out


class DeadHistory:
    """What persists across logs: the dead-strip history and the last dead fractions per site.

    Args:
        threshold: dead fraction whose crossing is an alert.
        strip_length: columns (logs) kept per strip.
        rise: a rise of the dead fraction above this since the last log is an alert.

    Example::

        >>> history = DeadHistory(threshold=0.25)
        >>> from lightning_cnnviz.activations.stats import compute_stats
        >>> figures = compute_stats(_example_state(), tau=0.025)
        >>> history.update({"relu": figures})
        [('relu', 0.5, None)]
        >>> history.strips["relu"].tolist(), history.dead
        ([[0], [255]], {'relu': [0]})
    """

    def __init__(self, threshold: float, strip_length: int = 128, rise: float = 0.1) -> None:
        self.threshold, self.strip_length, self.rise = threshold, strip_length, rise
        self.strips: dict[str, Tensor] = {}
        self.previous: dict[str, float] = {}
        self.dead: dict[str, list[int]] = {}  # dead channels per site at the last log

    def update(
        self, figures: Mapping[str, Mapping[str, Tensor]]
    ) -> list[tuple[str, float, float | None]]:
        """Take one log's figures per site (host tensors); return the ``dead_alerts``."""
        fractions = {}
        for site, f in figures.items():
            column = strip_column(f["active_share"])
            self.strips[site] = strip_append(self.strips.get(site), column, self.strip_length)
            self.dead[site] = f["dead"].nonzero().flatten().tolist()
            fractions[site] = float(f["dead_fraction"])
        alerts = dead_alerts(fractions, self.previous, self.threshold, self.rise)
        self.previous.update(fractions)
        return alerts

    def state_dict(self) -> dict[str, Any]:
        """Strips (uint8 tensors) and last fractions, for a checkpoint."""
        return {
            "strips": {k: v.clone() for k, v in self.strips.items()},
            "previous": dict(self.previous),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.strips = {k: v.clone() for k, v in state.get("strips", {}).items()}
        self.previous = dict(state.get("previous", {}))
