"""The window recorder: activation statistics per call site, fed by forward hooks.

Before a logging step the monitor hooks the watched layers for the last
``window`` training batches (``schedule.batches_to_log`` says when that window opens);
``Recorder`` feeds each call site's ``ActivationStats`` from those batches and from
the probe pass, keeps the producers' weight-gradient norms, and ``gather`` reduces
across ranks and moves every figure to the host in one transfer. Nothing here
knows about Lightning.

Example::

    >>> import torch
    >>> from torch import nn
    >>> relu = nn.ReLU()
    >>> net = nn.Sequential(nn.Flatten(), relu)
    >>> x = torch.tensor([[1.0, -1.0, 2.0], [3.0, -2.0, 0.0]])
    >>> recorder = Recorder()
    >>> recorder.trace(net, {"1": relu}, x)  # learns the call site "1" (3 units)
    >>> recorder.attach({"1": relu})  # a training batch...
    >>> _ = net(x)
    >>> recorder.detach()
    >>> recorder.probe(net, {"1": relu}, x)  # ...and the probe pass
    >>> figures, grads = recorder.gather(tau=0.025)
    >>> figures["1"]["dead"].tolist(), float(figures["1"]["count"]), grads
    ([0.0, 1.0, 0.0], 4.0, {})
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lightning_cnnviz.activations.grad_reads import GradReads
from lightning_cnnviz.activations.output_activation import pools_to
from lightning_cnnviz.activations.sites import SiteInfo, trace_sites
from lightning_cnnviz.activations.stats import (
    ActivationStats,
    WidthChanged,
    all_reduce_states,
    to_host,
)
from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.layer_calls import ALONE
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.trace_images import trace_images

__all__ = [
    "Recorder",
    "gather",
    "make_stats",
    "site_scalars",
]


def make_stats(
    sites: Mapping[str, SiteInfo], eps: float, device: torch.device | str
) -> dict[str, ActivationStats]:
    """One zeroed ``ActivationStats`` per traced call site, on ``device``.

    Example::

        >>> info = SiteInfo("fc", "fc", -1, 3, "positive", None)
        >>> make_stats({"fc": info}, eps=0.0, device="cpu")["fc"].channels
        3
    """
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

    Example::

        >>> seen, unseen = ActivationStats(2), ActivationStats(2)
        >>> seen.update(torch.tensor([[0.0, 1.0]]))
        >>> figures, extras = gather({"a": seen, "b": unseen}, {"g": torch.tensor(2.0)}, 0.025)
        >>> list(figures), figures["a"]["dead_fraction"].item(), extras
        (['a'], 0.5, {'g': 2.0})
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


_SCALARS = ("dead_fraction", "dormant_fraction", "zero_fraction", "mean", "std", "max_abs")


def site_scalars(
    figures: Mapping[str, Tensor], info: SiteInfo, grads: Mapping[str, float]
) -> dict[str, float]:
    """The scalars logged for one site: ``{"dead_fraction": ..., "grad_norm": ...}``.

    Example::

        >>> stats = ActivationStats(2)
        >>> stats.update(torch.tensor([[0.0, 1.0]]))
        >>> info = SiteInfo("relu", "fc", -1, 2, "positive", None)
        >>> scalars = site_scalars(stats.compute(), info, {"fc": 0.5})
        >>> scalars["dead_fraction"], scalars["grad_norm"], "saturation" in scalars
        (0.5, 0.5, False)
    """
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
    failure is kept in ``failure``); ``probe`` feeds the probe pass (and keeps a
    subsample for histograms); ``read_grads`` reads the producers' weight-gradient
    norms and the depth profile (into ``grads``); ``gather`` reduces, computes, moves
    to the host once, and resets.

    Args:
        eps: activity threshold.
        histograms: keep up to ``4096`` probe values per site for histograms.
    """

    def __init__(self, eps: float = 0.0, histograms: bool = False) -> None:
        self.eps, self.histograms = eps, histograms
        self.sites: dict[str, SiteInfo] = {}
        self.stats: dict[str, ActivationStats] = {}
        self.samples: dict[str, Tensor] = {}
        self.depth: list[str] = []  # layers with a weight matrix, in forward order
        # the modules read by name besides the watched ones: the depth profile's, producers
        self.traced: dict[str, nn.Module] = {}
        self.stale = False  # a watched layer's width changed since it was traced
        self.grads = GradReads()  # the producers' gradient norms, the depth profile
        self.root: nn.Module | None = None
        self.failure: Exception | None = None
        self.counts: dict[str, int] = {}
        self.window_seconds = 0.0  # spent in ``record``, read and reset by the monitor
        self.logits: Tensor | None = None  # the last probe pass's output, when (N, K)
        self.output_site: str | None = None  # the site whose output is the model's own
        self._outputs: dict[str, Tensor] = {}  # the probe pass's site outputs (held: ids recycle)
        self._capture: LayerCapture | None = None

    @property
    def shared(self) -> set[str]:
        """Watched modules called more than once per forward pass."""
        return {name for name, count in self.counts.items() if count > 1}

    def trace(self, model: nn.Module, selected: Mapping[str, nn.Module], x: Tensor) -> None:
        """Learn the call sites (call counts, ``SiteInfo``) from probe passes on ``x``.

        One pass on the first image; a layer it does not call is looked for in the next
        images one at a time (up to ``ALONE``): a branch ``forward`` chooses by its input
        is trained on the batches that take it (it was said "not called ... in eval mode,
        e.g. a GAN's generator" and never recorded).
        """
        self.depth = []
        n = trace_images(model)  # one, unless a BatchNorm keeps no statistics
        self.counts, self.sites = trace_sites(model, selected, lambda: model(x[:n]), self.depth)
        missed = {n: m for n, m in selected.items() if not self.counts.get(n)}
        for one in x[n:ALONE].split(n) if missed else ():
            counts, sites = trace_sites(model, missed, lambda one=one: model(one))
            taken = {name for name, count in counts.items() if count}
            self.counts |= {name: counts[name] for name in taken}
            self.sites |= {s: info for s, info in sites.items() if info.module in taken}
            missed = {n: m for n, m in missed.items() if n not in taken}
            if not missed:
                break
        self.stats, self.root = make_stats(self.sites, self.eps, x.device), model
        read = set(self.depth) | {info.producer for info in self.sites.values() if info.producer}
        self.traced = {name: m for name, m in named_layers(model).items() if name in read}

    def forget(self) -> None:
        """Drop the traced call sites (the model changed): traced anew before the next read."""
        self.sites, self.stats, self.depth, self.traced = {}, {}, [], {}
        self.stale = False

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
            except WidthChanged:  # a layer re-made at another width: traced anew at the event
                self.stale = True
            except Exception as err:  # never break the user's training step
                self.failure = err
            self.window_seconds += time.perf_counter() - start

    def probe(
        self, model: nn.Module, selected: Mapping[str, nn.Module], x: Tensor, scores: bool = True
    ) -> None:
        """One probe pass on ``x`` (eval mode, flags restored), counted like a window batch.

        ``scores``: whether the model's output may be class scores (``ProbeReader``'s read:
        not features a head outside ``forward`` reads); where not, no logits are kept and
        no site's units are the logits.
        """
        capture = LayerCapture(selected, shared=self.shared, on_output=self.record_probe)
        self._outputs = {}
        with probe_mode(model), capture:
            out = model(x)
        # the logits (N, K), for the monitor's chance-level check; anything else: unknown
        read = scores and isinstance(out, Tensor) and out.ndim == 2
        self.logits = out.detach() if read else None
        # an activation module that returned the model's output itself (a ReLU after the
        # last Linear), or whose output pooled over its positions is it (SqueezeNet's ReLU
        # on a 1x1 conv's class maps, then a global average pool): its "units" are the logits
        # (a watched layer that computes the logits, or a container ending in one, is no
        # activation: ``SiteInfo.kind`` "linear")
        kept_out = {s: k for s, k in self._outputs.items() if self._kind(s) != "linear"}
        found = [site for site, kept in kept_out.items() if kept is out and scores]
        if not found and self.logits is not None:
            found = [site for site, kept in kept_out.items() if pools_to(kept, self.logits)]
        self.output_site, self._outputs = (found[-1] if found else None), {}

    def _kind(self, site: str) -> str | None:
        info = self.sites.get(site)
        return None if info is None else info.kind

    def record_probe(self, site: str, out: Tensor) -> None:
        """Hook ``on_output`` for the probe pass."""
        if site in self.stats:
            self.stats[site].update(out)
            self._outputs[site] = out
        if self.histograms:
            flat = out.detach().reshape(-1)
            self.samples[site] = flat[:: max(1, flat.numel() // 4096)].float().clone()

    def read_grads(self, model: nn.Module) -> None:
        """Keep the producers' weight-gradient norms and the depth profile (``GradReads``)."""
        producers = {info.producer for info in self.sites.values() if info.producer}
        self.grads.read(model, producers, self.depth)

    def gather(self, tau: float) -> tuple[dict[str, dict[str, Tensor]], dict[str, float]]:
        """``gather`` over the sites and the kept gradient norms (then cleared)."""
        return gather(self.stats, self.grads.take(), tau)
