"""``KernelMonitor``: grids of the conv filters, their norms and how fast they change."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.core.checks import check_choice, check_int
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.core.rendering import CMAPS
from lightning_cnnviz.core.selection import CONV_TYPES, named_layers, of_type, unwrap_model
from lightning_cnnviz.kernels import dense, draw, figures


class KernelMonitor(Monitor):
    """What the convolution filters look like, per layer, as training goes on.

    Reads the weights only: no hooks, no forward pass. Per selected conv layer it
    logs one image of its filters (``kernels/{layer}``): a first layer with three
    input channels as RGB, one input channel as gray, more as a row of
    input-channel slices per filter (``in_channel_mode="tile"``) or one L2-norm
    map per filter (``"norm"``); Conv3d depth slices side by side, Conv1d a strip
    per filter, dilated kernels at their footprint. Scalars per layer: ``mean_abs``,
    ``relative_change`` (``||W_t - W_prev|| / ||W_prev||`` since the last log) and
    ``hf_energy`` (spectral energy share above half the Nyquist frequency, mean over
    filters: noisy, high-frequency kernels are a sign of overfitting). How to read
    them: ``docs/kernels.md``.

    Args:
        layers: ``"auto"`` = every Conv1d/2d/3d (plus every Linear with ``linear``).
        normalization: ``"per_filter"`` (min-max per filter, gray) or
            ``"layer_symmetric"`` (one scale per layer, diverging colours, 0 neutral).
        in_channel_mode: ``"tile"`` or ``"norm"`` for filters with more than 3 inputs.
        max_filters: filters drawn per layer.
        max_in_channels: input-channel slices drawn per filter in ``"tile"`` mode.
        cmap: colormap name (``None``: gray, or coolwarm for ``layer_symmetric``).
        log_delta: also log ``W_t - W_prev`` as ``kernels/{layer}/delta`` (layer-symmetric).
        linear: also draw Linear layers: the weight matrix as a heatmap, and for
            the first Linear after the conv stack each unit's weights as
            ``C x H x W`` maps (``kernels/{layer}/units``).
        **kwargs: the shared arguments of ``Monitor`` (``every_n_steps`` (default 500),
            ``every_n_epochs``, ``tag_prefix``, ``strict``; no probe: ``num_samples`` and
            ``seed`` do nothing here).

    Example::

        >>> from lightning_cnnviz import KernelMonitor
        >>> monitor = KernelMonitor(every_n_steps=100, normalization="layer_symmetric")
        >>> monitor.tag("conv1", "hf_energy")
        'kernels/conv1/hf_energy'
    """

    section = "kernels"
    default_every_n_steps = 500
    needs_call_sites = False  # weights only: no forward pass, no hooks

    def __init__(
        self,
        layers: str | list[str] = "auto",
        normalization: Literal["per_filter", "layer_symmetric"] = "per_filter",
        in_channel_mode: Literal["tile", "norm"] = "tile",
        max_filters: int = 64,
        max_in_channels: int = 8,
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
        check_choice("cmap", cmap, [None, *CMAPS])
        check_choice("log_delta", log_delta, [False, True])
        check_choice("linear", linear, [False, True])
        self.normalization, self.in_channel_mode, self.cmap = normalization, in_channel_mode, cmap
        self.max_filters, self.max_in_channels = max_filters, max_in_channels
        self.log_delta, self.linear = log_delta, linear
        self._previous: dict[str, Tensor] = {}
        self._unit_grid: dict[str, tuple[int, int, int]] = {}

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        types = (*CONV_TYPES, nn.Linear) if self.linear else CONV_TYPES
        return of_type(*types)(model, available)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        wrong = [n for n, m in self.selected.items() if not isinstance(m, (*CONV_TYPES, nn.Linear))]
        if wrong:
            raise ValueError(
                f"`layers` of KernelMonitor must select Conv1d/2d/3d or Linear modules, got {wrong}"
            )
        found = dense.first_linear_after_conv(named_layers(unwrap_model(pl_module)))
        self._unit_grid = dict([found]) if found and found[0] in self.selected else {}

    def _images(self, name: str, module: nn.Module, weight: Tensor) -> dict[str, Tensor]:
        opts = {"max_filters": self.max_filters, "max_in_channels": self.max_in_channels}
        if isinstance(module, nn.Linear):
            images = {self.tag(name): dense.linear_heatmap(weight)}
            if name in self._unit_grid:
                images[self.tag(name, "units")] = dense.render_units(
                    weight, self._unit_grid[name], max_units=self.max_filters,
                    max_in_channels=self.max_in_channels,
                )  # fmt: skip
            return images
        dilation = tuple(module.dilation)
        image = draw.render_kernels(
            weight, normalization=self.normalization, cmap=self.cmap, dilation=dilation,
            in_channel_mode=self.in_channel_mode, **opts,
        )  # fmt: skip
        images = {self.tag(name): image}
        previous = self._previous.get(name)
        if self.log_delta and previous is not None and previous.shape == weight.shape:
            images[self.tag(name, "delta")] = draw.render_kernels(
                weight - previous, normalization="layer_symmetric", dilation=dilation,
                in_channel_mode=self.in_channel_mode, **opts,
            )  # fmt: skip
        return images

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step, values, images = trainer.global_step, {}, {}
        with self.phase("compute"):
            for name, module in self.selected.items():
                weight = module.weight.detach()
                values[self.tag(name, "mean_abs")] = figures.mean_abs(weight)
                if isinstance(module, CONV_TYPES):
                    hf = figures.hf_energy(weight)
                    if hf is not None:
                        values[self.tag(name, "hf_energy")] = hf
                previous = self._previous.get(name)
                if previous is not None and previous.shape == weight.shape:
                    previous = previous.to(weight.device)
                    values[self.tag(name, "relative_change")] = figures.relative_change(
                        weight, previous
                    )
                    self._previous[name] = previous
        with self.phase("render"):
            for name, module in self.selected.items():
                images.update(self._images(name, module, module.weight.detach().float()))
                self._previous[name] = module.weight.detach().float().clone()
        with self.phase("write"):  # one host transfer for every scalar
            host = torch.stack([v.float() for v in values.values()]).cpu().tolist()
            self.sink.scalars(dict(zip(values, host, strict=True)), step)
            for tag, image in images.items():
                self.sink.image(tag, image, step)

    @override
    def extra_state(self) -> dict[str, Any]:
        return {"previous": {k: v.detach().cpu() for k, v in self._previous.items()}}

    @override
    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._previous = dict(state.get("previous", {}))
