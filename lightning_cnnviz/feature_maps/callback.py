"""``FeatureMapMonitor``: what each conv block outputs for a fixed set of probe images."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.core.capture import LayerCapture, module_name
from lightning_cnnviz.core.checks import check_choice, check_int
from lightning_cnnviz.core.inputs import as_pictures, norm_stats
from lightning_cnnviz.core.labels import legible_width
from lightning_cnnviz.core.layer_calls import called_alone
from lightning_cnnviz.core.map_places import one_place
from lightning_cnnviz.core.monitor import Monitor, with_probe
from lightning_cnnviz.core.outputs import NotApplicable
from lightning_cnnviz.core.rendering import CMAPS
from lightning_cnnviz.core.selection import named_layers, unwrap_model
from lightning_cnnviz.core.target_layer import trace_calls
from lightning_cnnviz.core.trace_images import trace_images
from lightning_cnnviz.core.voice import listed
from lightning_cnnviz.feature_maps import draw as fm
from lightning_cnnviz.feature_maps.layers import auto_layers, candidates, stage_kind, stage_pairs
from lightning_cnnviz.feature_maps.maps import as_map, as_map_pictures


class FeatureMapMonitor(Monitor, section="feature_maps"):
    """Feature maps of the probe images, one grid per selected layer.

    On logging steps only, one probe forward pass in eval mode with hooks on the
    selected layers (removed right after). Per layer (``feature_maps/{layer}``):
    one row per probe sample, the input first, then a mean-activation heatmap
    over the input, then the chosen channels; channels zero on the whole probe
    are dimmed and framed in red. With ``stages``, each conv also gets
    ``feature_maps/{conv}/stages``: for the first sample, the same channels after
    the conv, after its activation and after its pooling. How to read them:
    ``docs/feature_maps.md``.

    Args:
        layers: ``"auto"`` = every conv and pooling module whose maps have more than one
            position, and every transformer block (tokens drawn on the patch grid;
            ``max_layers`` of them).
        max_layers: cap of the ``auto`` selection (evenly spaced through the network).
        max_samples_shown: probe samples drawn, one row each.
        channel_select: ``"top_k"`` (most active on the probe), ``"all"`` (capped at
            ``max_channels``) or a list of channel indices.
        top_k: channels shown with ``"top_k"``.
        max_channels: cap for ``"all"`` and for a list.
        normalization: ``"per_layer_fixed"`` (one range per layer, kept from the first
            log, so a channel is comparable across steps) or ``"per_map"``.
        stages: also log conv -> activation -> pooling side by side for each conv.
        cmap: colormap of the maps.
        tile_size: short side of a tile in pixels (inputs are upscaled by an integer).
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``budget``, ``num_samples``
            (channel activity and ranges are measured on the whole probe), ``tag_prefix``,
            ``strict``, ``seed``).

    Example::

        >>> from lightning_cnnviz import FeatureMapMonitor
        >>> monitor = FeatureMapMonitor(every_n_steps=200, channel_select="all")
        >>> monitor.tag("conv1", "stages")
        'feature_maps/conv1/stages'
    """

    auto_description = (
        "it draws conv and pooling layers whose maps have more than one position, and "
        "transformer blocks"
    )

    def __init__(
        self,
        layers: str | list[str] = "auto",
        max_layers: int = 6,
        max_samples_shown: int = 4,
        channel_select: Literal["top_k", "all"] | list[int] = "top_k",
        top_k: int = 8,
        max_channels: int = 32,
        normalization: Literal["per_layer_fixed", "per_map"] = "per_layer_fixed",
        stages: bool = True,
        cmap: str = "viridis",
        tile_size: int = 56,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, **kwargs)
        for name, value in [("max_layers", max_layers), ("max_samples_shown", max_samples_shown)]:
            check_int(name, value)
        for name, value in [("top_k", top_k), ("max_channels", max_channels)]:
            check_int(name, value)
        check_int("tile_size", tile_size)
        if not (channel_select in ("top_k", "all") or _index_list(channel_select)):
            raise ValueError(
                "`channel_select` must be 'top_k', 'all' or a non-empty list of channel "
                f"indices, got {channel_select!r}"
            )
        check_choice("normalization", normalization, ["per_layer_fixed", "per_map"])
        check_choice("stages", stages, [False, True])
        check_choice("cmap", cmap, CMAPS)
        self.max_layers, self.max_samples_shown = max_layers, max_samples_shown
        self.channel_select, self.top_k, self.max_channels = channel_select, top_k, max_channels
        self.normalization, self.stages, self.cmap = normalization, stages, cmap
        self.tile_size = tile_size
        self._ranges: dict[str, Tensor] = {}
        self._stages: dict[str, list[str]] = {}
        self._hooked: dict[str, nn.Module] = {}
        self._hook_shared: set[str] = set()

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer  # auto_layers (in setup) traces one probe sample
        super().setup(trainer, pl_module, stage)

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        """Conv and pooling modules with maps above one position (traced), transformer blocks."""
        x = self.probe_input(self._trainer, model)[: trace_images(model)]
        watched = {n: available[n] for n in candidates(model, available)}
        calls, _ = trace_calls(model, watched, x)
        shapes = {call.name: call.shape for call in calls}
        # inputs without a channel dimension (flat vectors, a waveform made a spectrogram
        # in `forward`): image maps are drawn on grey
        return auto_layers(
            model, available, self.max_layers, shapes, x.dim() if x.dim() >= 3 else 4
        )

    @override
    def find_call_sites(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """One traced pass (no clones): call sites, and each conv's activation and pooling."""
        model, order = unwrap_model(pl_module), []
        layers = named_layers(model)
        kinds = {n: stage_kind(m) if self.stages else None for n, m in layers.items()}
        watch = {n: m for n, m in layers.items() if n in self.selected or kinds[n]}
        # the whole probe, as the events pass it: a branch `forward` chooses by the images
        # may be taken by one of them alone and not by the batch (setups hunt 74)
        x = self.probe_input(trainer, pl_module)
        with with_probe(model), LayerCapture(watch, on_output=lambda s, o: order.append(s)):
            model(x)
        counts = Counter(order)
        missed = {n: m for n, m in self.selected.items() if not counts[n]}
        counts.update(called_alone(model, missed, x) if missed else {})  # a data-chosen branch
        self._call_counts = {n: counts[n] for n in self.selected}  # 0: never called
        self.shared = {n for n in self.selected if counts[n] > 1}
        pairs = stage_pairs([(n, kinds[n] or "other") for n in order])
        self._stages = {
            site: [s for s in (site, *pairs[site]) if s is not None]
            for site in self.sites()
            if any(pairs.get(site, ()))
        }
        names = {module_name(s, self.selected) for sites in self._stages.values() for s in sites}
        self._hooked = {n: m for n, m in layers.items() if n in self.selected or n in names}
        self._hook_shared = {n for n in self._hooked if counts[n] > 1}

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model, step, shown = unwrap_model(pl_module), trainer.global_step, self.max_samples_shown
        x = self.probe_input(trainer, pl_module)
        hooks = LayerCapture(self._hooked, shared=self._hook_shared)
        with self.phase("capture"), with_probe(model), hooks as cap:  # the only hooks
            model(x)
        # setups hunt 82: a named layer whose map is 1x1 is drawn, one colour a tile: said once
        flat = {s: size for s, a in cap.outputs.items() if s in self.sites()
                and a.dim() == x.dim() and (size := one_place(tuple(a.shape)))}  # fmt: skip
        if flat:
            self.warn_once("one_place", f"the output of {listed(list(flat))} has one "
                           f"position ({', '.join(sorted(set(flat.values())))}): each tile is one "
                           "colour (the channel's value for that image), with no place to "
                           "show; a layer with a larger output shows where")  # fmt: skip
        # signals: one heat strip per channel; volumes: depth slices side by side
        outs = {s: as_map_pictures(a, x.dim()) for s, a in cap.outputs.items()}
        with self.phase("compute"):
            plans, skipped, untaken = {}, [], []
            for site in self.sites():
                if site not in outs:  # not called in this pass: no claim on its shape
                    untaken.append(site)
                    continue
                act = as_map(outs[site], self.module_at(site), model, x)
                if act is None:
                    skipped.append(site)
                    continue
                outs[site] = act
                if self.normalization == "per_layer_fixed" and site not in self._ranges:
                    self._ranges[site] = fm.value_range(act)
                activity = fm.channel_activity(act)
                chosen = fm.choose_channels(
                    activity, self.channel_select, self.top_k, self.max_channels
                )
                plans[site] = (act, chosen)
            flags = [(~torch.isfinite(a).all()).long().view(1) for a, _ in plans.values()]
            host = torch.cat([c for _, c in plans.values()] + flags).tolist() if plans else []
        if untaken:  # setups hunt 74: a branch `forward` chooses by its input, trained
            self.warn_once(  # on the batches that take it: drawn where a later pass does
                "untaken",
                f"the probe images did not take {listed(untaken)} at step {step} (a branch "
                "`forward` chooses by its input): not drawn at the events that do not call it",
            )
            if not plans:
                return
        if skipped and not plans:  # nothing to draw, this event or any other
            raise NotApplicable(
                f"none of its layers gives a map: the output of {listed(skipped)} is neither "
                "shaped like the input nor a token grid; name conv or pooling layers with "
                "`layers=`"
            )
        if skipped:
            self.warn_once(
                "skipped",
                f"skipped {skipped}: their output is neither shaped like the input nor a "
                "token grid.",
            )
        nonfinite = [s for s, bad in zip(plans, host[len(host) - len(flags) :], strict=True) if bad]
        if nonfinite:
            self.warn_once(
                "non_finite",
                f"non-finite activations in {nonfinite} at step {step} (drawn as 0).",
            )
        with self.phase("render"):  # host copies; the grids are drawn on the sink's thread
            strip = max(1, x.shape[-1] // 4)  # a signal's strip: a quarter as high as long
            inputs = None  # inputs without a channel dimension (a waveform `forward` makes a
            if x.dim() >= 3:  # spectrogram of): the maps are drawn on grey (setups hunt 26)
                pictures = as_pictures(x[:shown], strip=strip)[0]
                inputs = fm.input_image(pictures, norm_stats(trainer)).cpu()
            needed = {s for site in plans for s in self._stages.get(site, [site])}
            outs = {s: a.cpu() for s, a in outs.items() if s in needed}
            plans = {site: (outs[site], chosen.cpu()) for site, (_, chosen) in plans.items()}
            ranges = {s: r.cpu() for s, r in self._ranges.items() if s in plans}
            self.in_background(lambda: self._render(inputs, plans, outs, ranges, host, step))

    def _render(
        self, inputs: Tensor | None, plans: dict[str, tuple[Tensor, Tensor]],
        outs: dict[str, Tensor], ranges: dict[str, Tensor], host: list[int], step: int,
    ) -> None:  # fmt: skip
        """Draw an event's grids (a job on the sink's thread) from host copies only.

        Never from the monitor's state, which lives on the model's device (a read there
        would wait for the training stream).
        """
        shown = self.max_samples_shown
        # the widest grid (input, mean, chosen channels) fits a card with legible labels
        columns = max((chosen.numel() for _, chosen in plans.values()), default=0) + 2
        cap = legible_width() // columns - 2
        act = next(iter(plans.values()))[0]
        hw = (inputs if inputs is not None else act).shape[-2:]
        size = fm.tile_shape(*hw, self.tile_size, max_width=cap)
        if inputs is None:  # no picture of the input: its tile grey, the mean heat alone
            inputs01 = torch.full((min(shown, len(act)), 1, *size), 0.5)
        else:
            inputs01 = fm.resize(inputs, size)
        for site, (act, chosen) in plans.items():
            labels = [str(c) for c in host[: chosen.numel()]]
            host = host[chosen.numel() :]
            if not labels:
                continue
            dead = fm.dead_channels(act)[chosen]
            maps = fm.normalize_maps(act[:shown, chosen], self.normalization, ranges.get(site))
            heat = fm.mean_heat(act[:shown], size)
            image = fm.layer_grid(inputs01, heat, fm.resize(maps, size), dead, labels, self.cmap)
            self.sink.image(self.tag(site), image, step)
            if site in self._stages:
                self._log_stages(site, outs, ranges.get(site), chosen, labels, size, step)

    def _log_stages(
        self, site: str, outs: dict[str, Tensor], span: Tensor | None, chosen: Tensor,
        labels: list[str], size: tuple[int, int], step: int,
    ) -> None:  # fmt: skip
        acts = [(s, outs[s]) for s in self._stages[site] if s in outs]
        acts = [(s, a) for s, a in acts if a.dim() == 4 and a.shape[1] == outs[site].shape[1]]
        maps = [a[0, chosen] for _, a in acts]
        if span is None:
            span = fm.value_range(torch.cat([m.flatten() for m in maps]))
        rows = [
            (s, fm.resize(fm.normalize_maps(m, "fixed", span), size), fm.dead_channels(a)[chosen])
            for (s, a), m in zip(acts, maps, strict=True)
        ]
        self.sink.image(self.tag(site, "stages"), fm.stages_grid(rows, labels, self.cmap), step)

    @override
    def extra_state(self) -> dict[str, Any]:
        return {"ranges": {k: v.detach().cpu().tolist() for k, v in self._ranges.items()}}

    @override
    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._ranges = {k: torch.tensor(v) for k, v in state.get("ranges", {}).items()}


def _index_list(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )
