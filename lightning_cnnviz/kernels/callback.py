"""``KernelMonitor``: grids of the conv filters, their norms and how fast they change."""

from __future__ import annotations

import inspect
from typing import Any, Literal, NamedTuple

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.core.checks import check_choice, check_int
from lightning_cnnviz.core.findings import Finding
from lightning_cnnviz.core.hook_guard import ConfigError
from lightning_cnnviz.core.layer_types import CONV_TYPES
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.core.rendering import CMAPS
from lightning_cnnviz.core.selection import evenly_spaced, named_layers, of_type, unwrap_model
from lightning_cnnviz.core.voice import listed
from lightning_cnnviz.core.weight_leaves import weight_param
from lightning_cnnviz.kernels import dense, draw, figures
from lightning_cnnviz.kernels.frozen_check import FrozenCheck
from lightning_cnnviz.kernels.step_gradients import StepGradients
from lightning_cnnviz.kernels.weight_copies import WeightCopies


class _Picture(NamedTuple):
    """One image of an event: what to draw, as a host copy, and the layer's colour scale."""

    tag: str
    kind: str  # "kernels", "delta" (conv weights), "heatmap", "units" (Linear weights)
    tensor: Tensor
    scale: Tensor | None = None
    layout: tuple[int, ...] = ()  # a conv's dilation, or the (C, H, W) map Linear units read


TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
KERNEL_TYPES = (*CONV_TYPES, *TRANSPOSED)


def filters_of(module: nn.Module) -> Tensor:
    """The layer's weight with its output channels first.

    A transposed conv keeps its input channels first: a GAN generator's filters read as
    those of a conv.
    """
    weight = module.weight.detach()
    return weight.transpose(0, 1) if isinstance(module, TRANSPOSED) else weight


def learnt_of(module: nn.Module, weight: Tensor) -> Tensor | None:
    """The weight the optimiser moves, laid out as ``weight`` (``filters_of``'s), else None.

    A parametrized weight's leaf (``core.weight_leaves.weight_param``): its computed weight
    also moves where nothing is learnt (spectral norm refines its estimate of the largest
    singular value at every training forward; hunt 46: convs whose gradients hooks zeroed
    were never seen still). None for a weight computed anew at each access (a property: a
    Bayesian layer's sample; setups hunt 47: two draws apart read as a change).
    """
    leaf = weight_param(module)
    if leaf is None:
        return None
    leaf = leaf.detach().transpose(0, 1) if isinstance(module, TRANSPOSED) else leaf.detach()
    return leaf if leaf.shape == weight.shape else weight


def learns(module: nn.Module) -> bool:
    """Whether the weight ``learnt_of`` reads takes a gradient (or is none to read)."""
    leaf = weight_param(module)
    return leaf is None or leaf.requires_grad


class KernelMonitor(FrozenCheck, StepGradients, Monitor, section="kernels"):
    """What the convolution filters look like, per layer, as training goes on.

    Reads the weights only: no hooks, no forward pass. Per selected conv layer it
    logs one image of its filters (``kernels/{layer}``): a first layer with three
    input channels as RGB, one input channel as gray, more as a row of
    input-channel slices per filter (``in_channel_mode="tile"``) or one L2-norm
    map per filter (``"norm"``); Conv3d depth slices side by side, Conv1d a strip
    per filter, dilated kernels at their footprint. Scalars per layer: ``mean_abs``,
    ``relative_change`` (``||W_t - W_prev|| / ||W_prev||`` since the last log, of the
    weight the optimiser moves: a parametrized one's original, or the computed weight
    where an adapter learns) and ``hf_energy`` (spectral energy share above half the
    Nyquist frequency, mean over filters: noisy, high-frequency kernels are a sign of
    overfitting). How to read them: ``docs/kernels.md``.

    Args:
        layers: ``"auto"`` = every Conv1d/2d/3d (plus every Linear with ``linear``).
        normalization: ``"per_filter"`` (min-max per filter, gray) or
            ``"layer_symmetric"`` (one scale per layer, diverging colours, 0 neutral).
        in_channel_mode: ``"tile"`` or ``"norm"`` for filters with more than 3 inputs.
        max_filters: filters drawn per layer.
        max_in_channels: input-channel slices drawn per filter in ``"tile"`` mode.
        max_drawn_layers: images are drawn for at most this many of the selected
            layers, evenly spread from the first to the last (``None``: every one), so
            that a deep network's pictures stay cheap; the scalars cover every layer.
        cmap: colormap name (``None``: gray, or coolwarm for ``layer_symmetric``).
        log_delta: also log ``W_t - W_prev`` as ``kernels/{layer}/delta`` (layer-symmetric).
        linear: also draw Linear layers: the weight matrix as a heatmap, and for
            the first Linear after the conv stack each unit's weights as
            ``C x H x W`` maps (``kernels/{layer}/units``).
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``budget``, ``tag_prefix``,
            ``strict``; no probe: ``num_samples`` and
            ``seed`` do nothing here).

    Example::

        >>> from lightning_cnnviz import KernelMonitor
        >>> monitor = KernelMonitor(every_n_steps=100, normalization="layer_symmetric")
        >>> monitor.tag("conv1", "hf_energy")
        'kernels/conv1/hf_energy'
    """

    auto_description = (
        "it draws the weights of conv layers, transposed ones too; `linear=True` adds linear ones"
    )

    needs_call_sites = False  # weights only: no forward pass, no hooks

    def __init__(
        self,
        layers: str | list[str] = "auto",
        normalization: Literal["per_filter", "layer_symmetric"] = "per_filter",
        in_channel_mode: Literal["tile", "norm"] = "tile",
        max_filters: int = 64,
        max_in_channels: int = 8,
        max_drawn_layers: int | None = 16,
        cmap: str | None = None,
        log_delta: bool = False,
        linear: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, **kwargs)
        check_choice("normalization", normalization, ["per_filter", "layer_symmetric"])
        check_choice("in_channel_mode", in_channel_mode, ["tile", "norm"])
        check_int("max_filters", max_filters)
        check_int("max_in_channels", max_in_channels)
        check_int("max_drawn_layers", max_drawn_layers, allow_none=True)
        check_choice("cmap", cmap, [None, *CMAPS])
        check_choice("log_delta", log_delta, [False, True])
        check_choice("linear", linear, [False, True])
        self.normalization, self.in_channel_mode, self.cmap = normalization, in_channel_mode, cmap
        self.max_filters, self.max_in_channels = max_filters, max_in_channels
        self.max_drawn_layers = max_drawn_layers
        self._drawn: set[str] = set()
        self.log_delta, self.linear = log_delta, linear
        self._weights = WeightCopies()  # each layer's weight at the last event
        self._hf: dict[str, Tensor] = {}  # hf_energy of weights that take no gradient
        self._still: dict[str, int] = {}  # events in a row without change, per layer
        self._moving_run: dict[str, int] = {}  # events in a row with a change, per layer
        self._trained: set[str] = set()  # layers that changed at two events in a row, ever
        self._steps: list[int] = []  # the last events' steps
        self._scale: float | None = None  # a 16-bit loss scale at the last event
        self._frozen_told = False
        self._frozen: Finding | None = None  # told in this fit, until its layers move again
        self._unoptimised_told, self._unoptimised = False, None
        self._step_grads: list[str] = []
        self._grads_due = self._suspect = False
        self._zero_events = self.zero_run = 0
        self._rates_set: dict[int, float] = {}
        self.fed_after_backward: set[str] = set()
        self._losses: tuple[Tensor, Tensor] | None = None  # the first and the last returned
        self._unit_grid: dict[str, tuple[int, int, int]] = {}

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        types = (*KERNEL_TYPES, nn.Linear) if self.linear else KERNEL_TYPES
        return of_type(*types)(model, available)

    @override
    def layers_found(self, trainer: Trainer, pl_module: LightningModule) -> None:
        wrong = [
            n for n, m in self.selected.items() if not isinstance(m, (*KERNEL_TYPES, nn.Linear))
        ]
        named = {self.layers} if isinstance(self.layers, str) else set(self.layers)
        if wrong and (len(wrong) == len(self.selected) or named & set(wrong)):
            raise ConfigError(
                "`layers` of KernelMonitor must select Conv1d/2d/3d, ConvTranspose1d/2d/3d or "
                f"Linear modules, got {wrong}"
            )
        if wrong:  # a glob or a type name ("*", "features.*") that also matched those
            self.warn_once("no_kernels", f"leaves out {listed(wrong)}: they hold no kernels.")
            self.selected = {n: m for n, m in self.selected.items() if n not in wrong}
        self._drawn = set(evenly_spaced(list(self.selected), self.max_drawn_layers, single="first"))
        found = dense.first_linear_after_conv(named_layers(unwrap_model(pl_module)))
        self._unit_grid = dict([found]) if found and found[0] in self.selected else {}

    def _pictures(self, name: str, module: nn.Module, weight: Tensor) -> list[_Picture]:
        """What the layer's images need, as host copies (drawn later, off this thread).

        Only the filters (units) drawn are copied; the layer-wide colour scales are
        computed here, on the weight's device. The sink's thread then draws from
        copies that the optimizer cannot change meanwhile.
        """
        w, mode, shown = weight.float(), self.in_channel_mode, slice(self.max_filters)
        if isinstance(module, nn.Linear):
            heatmap = dense.shrink_matrix(w)
            scale = dense.matrix_scale(heatmap)  # of what is drawn (averaged), for contrast
            pictures = [_Picture(self.tag(name), "heatmap", heatmap, scale)]
            if name in self._unit_grid:
                grid = self._unit_grid[name]
                pictures.append(_Picture(self.tag(name, "units"), "units", w[shown], None, grid))
        else:
            dilation = tuple(getattr(module, "dilation", (1,) * (w.dim() - 2)))  # F.conv2d: 1
            symmetric = self.normalization == "layer_symmetric"
            scale = draw.layer_scale(w, in_channel_mode=mode) if symmetric else None
            pictures = [_Picture(self.tag(name), "kernels", w[shown], scale, dilation)]
            previous = self._weights.copies.get(name)
            learnt = learnt_of(module, weight)
            same = learnt is not None and previous is not None and previous.shape == learnt.shape
            if self.log_delta and same:
                delta = learnt.float() - previous  # type: ignore[operator]  # what moved
                scale = draw.layer_scale(delta, in_channel_mode=mode)
                pictures.append(
                    _Picture(self.tag(name, "delta"), "delta", delta[shown], scale, dilation)
                )
        return [
            p._replace(
                tensor=p.tensor.to("cpu", copy=True),
                scale=None if p.scale is None else p.scale.to("cpu"),
            )
            for p in pictures
        ]

    def _draw(self, pictures: list[_Picture], step: int) -> None:
        """Draw and write the images of one event (a job on the sink's thread)."""
        opts = {"max_filters": self.max_filters, "max_in_channels": self.max_in_channels}
        for p in pictures:
            if p.kind == "heatmap":
                image = dense.linear_heatmap(p.tensor, scale=p.scale)
            elif p.kind == "units":
                image = dense.render_units(
                    p.tensor, p.layout, max_units=self.max_filters,
                    max_in_channels=self.max_in_channels,
                )  # fmt: skip
            else:  # a delta is always layer-symmetric, in the diverging default colours
                delta = p.kind == "delta"
                image = draw.render_kernels(
                    p.tensor, normalization="layer_symmetric" if delta else self.normalization,
                    cmap=None if delta else self.cmap, dilation=p.layout, scale=p.scale,
                    in_channel_mode=self.in_channel_mode, **opts,
                )  # fmt: skip
            self.sink.image(p.tag, image, step)

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step, values, pictures = trainer.global_step, {}, []
        with self.phase("compute"):
            for name, module in self.selected.items():
                weight = filters_of(module)
                learnt, frozen = learnt_of(module, weight), not learns(module)
                still = learnt is not None and self._weights.follow(name, learnt, frozen)
                values[self.tag(name, "mean_abs")] = figures.mean_abs(weight)
                if isinstance(module, KERNEL_TYPES):
                    hf = self._hf.get(name) if still else figures.hf_energy(weight)
                    if hf is not None:
                        values[self.tag(name, "hf_energy")] = hf
                    if hf is not None and learnt is not None and frozen:
                        self._hf[name] = hf  # unchanged until its weight is written
                if learnt is None:
                    how = (
                        "computed anew at each access (a property, as a Bayesian layer's sample)"
                        if isinstance(inspect.getattr_static(module, "weight", None), property)
                        else "a tensor computed from others (set in `forward`)"
                    )
                    why = f"leaves out `{name}`'s relative_change: its weight is {how}, not a "
                    self.warn_once(f"sampled/{name}", why + "parameter it can follow")
                elif (change := self._weights.change(name, learnt, still)) is not None:
                    values[self.tag(name, "relative_change")] = change
        with self.phase("render"):  # only the copies: the drawing runs on the sink's thread
            for name, module in self.selected.items():
                weight = filters_of(module)
                learnt = learnt_of(module, weight)
                if name in self._drawn:
                    pictures += self._pictures(name, module, weight)
                if learnt is not None:
                    self._weights.keep(name, learnt, not learns(module))
        with self.phase("write"):  # one host transfer for every scalar
            host = torch.stack([v.float() for v in values.values()]).cpu().tolist()
            scalars = dict(zip(values, host, strict=True))
            self.sink.scalars(scalars, step)
        self.in_background(lambda: self._draw(pictures, step))
        self._check_frozen(trainer, scalars)

    @override
    def extra_state(self) -> dict[str, Any]:
        return {**self._weights.state_dict(), "still": dict(self._still),
                "steps": list(self._steps), "trained": sorted(self._trained),
                "frozen_told": self._frozen_told,
                "unoptimised_told": self._unoptimised_told}  # fmt: skip

    @override
    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._weights.load_state_dict(state)
        self._still, self._steps = dict(state.get("still", {})), list(state.get("steps", []))
        self._trained = set(state.get("trained", []))
        self._frozen_told = bool(state.get("frozen_told", False))
        self._unoptimised_told = bool(state.get("unoptimised_told", False))
