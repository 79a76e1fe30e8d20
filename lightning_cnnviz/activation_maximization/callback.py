"""``ActivationMaximizationMonitor``: the inputs that make channels and classes fire most."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.activation_maximization import optimize as feature_vis
from lightning_cnnviz.activation_maximization.optimize import Target
from lightning_cnnviz.core import labels, rendering
from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.checks import check_int, check_number
from lightning_cnnviz.core.inputs import input_bounds, norm_stats
from lightning_cnnviz.core.layer_types import CONV_TYPES
from lightning_cnnviz.core.monitor import Monitor, NotApplicable, with_probe
from lightning_cnnviz.core.probe_call import CUT_CAUSES, CUT_OFF
from lightning_cnnviz.core.selection import of_type, unwrap_model
from lightning_cnnviz.core.voice import listed

_TILE = 56  # tiles are upscaled (nearest) to at least this size
_MAX_SIDE = 128  # and larger inputs shrunk to at most this


class ActivationMaximizationMonitor(Monitor, section="activation_maximization"):
    """Feature visualisation: optimised inputs for top channels and for every class logit.

    On each event the probe picks the ``channels`` most active channels of each
    selected layer; for each of them, and for each of the first ``classes``
    logits, an input starts from seeded noise (the same every event, so changes
    come from the model) and climbs the channel's mean activation (the logit)
    for ``steps`` Adam steps with random jitter, total-variation and L2
    penalties, clamped to valid pixels when the data module tells the
    normalisation. Only the inputs are optimised (``torch.autograd.grad``
    w.r.t. the input batch): the model's parameters, ``.grad`` and
    ``requires_grad`` flags stay as they are. Writes the grids
    ``activation_maximization/{layer}`` (captions: channel index) and
    ``activation_maximization/classes``; the cost is in ``self.timings``.

    Args:
        layers: ``"auto"`` = the last conv layer; else any layers with (N, C, ...) outputs.
        channels: top channels per layer (by mean activation on the probe); 0 = none.
        classes: class logits visualised (the first ones); 0 = none.
        steps: optimisation steps per event.
        lr: Adam's learning rate (input units).
        jitter: largest random shift in pixels before each step.
        tv_weight: total-variation penalty weight (smoothness).
        l2_weight: L2 penalty weight on the input.
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``num_samples``, ``tag_prefix``,
            ``strict``, ``seed``, ``budget``).

    Example::

        >>> from lightning_cnnviz import ActivationMaximizationMonitor
        >>> monitor = ActivationMaximizationMonitor(channels=4, steps=32)
        >>> monitor.tag("classes")
        'activation_maximization/classes'
    """

    auto_description = "it optimises inputs for the last conv layer's channels"
    needs_gradients = True

    def __init__(
        self,
        layers: str | list[str] = "auto",
        channels: int = 8,
        classes: int = 10,
        steps: int = 64,
        lr: float = 0.1,
        jitter: int = 2,
        tv_weight: float = 0.1,
        l2_weight: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, **kwargs)
        check_int("channels", channels, minimum=0, maximum=256)
        check_int("classes", classes, minimum=0, maximum=1000)
        if channels == 0 and classes == 0:
            raise ValueError("`channels` and `classes` are both 0: nothing to visualise")
        check_int("steps", steps)
        check_number("lr", lr, low=1e-8, high=100.0)
        check_int("jitter", jitter, minimum=0, maximum=64)
        check_number("tv_weight", tv_weight, low=0.0)
        check_number("l2_weight", l2_weight, low=0.0)
        self.channels, self.classes, self.steps, self.lr = channels, classes, steps, lr
        self.jitter, self.tv_weight, self.l2_weight = jitter, tv_weight, l2_weight
        self.scores: dict[str, list[float]] = {}

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        return of_type(*CONV_TYPES)(model, available)[-1:]

    def targets(self, pl_module: LightningModule, x: Tensor) -> list[Target]:
        """Top channels per call site on the probe, then the first ``classes`` logits."""
        with with_probe(pl_module), LayerCapture(self.selected, shared=self.shared) as cap:
            logits = self.logits_of(unwrap_model(pl_module)(x), image_level=False)
        sites = [s for s in self.sites() if s in cap.outputs and cap.outputs[s].dim() >= 2]
        top = [feature_vis.top_channels(cap.outputs[s], self.channels) for s in sites]
        host = torch.cat(top).tolist() if self.channels and top else []
        targets, start = [], 0
        for site, chosen in zip(sites, top, strict=True):
            targets += [Target(site, c) for c in host[start : start + len(chosen)]]
            start += len(chosen)
        num_classes = logits.shape[1] if logits.dim() == 2 else 0
        if logits.dim() > 2 and self.classes:
            self.warn_once(
                "dense",
                "class images need one score per class per sample; the model's logits have "
                f"shape {tuple(logits.shape[1:])} per sample ({self.dense_words(logits)}): "
                "only channel images are made",
            )
        return targets + [Target(None, k) for k in range(min(self.classes, num_classes))]

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model = unwrap_model(pl_module)
        with self.phase("capture"):
            x = self.probe_input(trainer, pl_module)
            if x.dim() != 4:
                kind = {3: "signals (N, C, L)", 5: "volumes (N, C, D, H, W)"}.get(x.dim(), "")
                raise NotApplicable(
                    f"it optimises images (N, C, H, W); this model's inputs are "
                    f"{kind or f'{x.dim()}-D'} of shape {tuple(x.shape[1:])} per sample"
                )
            if x.is_complex():  # setups hunt 79: a raw "expected ... complex" RuntimeError
                raise NotApplicable(
                    f"it optimises real-valued images; this model's inputs are complex ({x.dtype})"
                )
            self.logits_key(trainer, pl_module)
            targets = self.targets(pl_module, x)
            if not targets:
                raise NotApplicable("it found no channel or class to optimise an image for")
        with self.phase("compute"):
            bounds, unreached = input_bounds(norm_stats(trainer), x.shape[1]), set()
            cut: set[str | None] = set()
            images, scores = feature_vis.maximize(
                model, self.selected, targets, tuple(x.shape[1:]),
                steps=self.steps, lr=self.lr, jitter=self.jitter, tv_weight=self.tv_weight,
                l2_weight=self.l2_weight, seed=self.seed, shared=self.shared, bounds=bounds,
                output_key=self._logits_key, unreached=unreached, cut=cut,
            )  # fmt: skip
            images, scores = images.cpu(), scores.cpu().tolist()
            if cut:  # scores the images cannot move: left out, said once (or aside)
                kept = self._uncut(targets, cut, trainer.global_step)
                targets, scores = [targets[i] for i in kept], [scores[i] for i in kept]
                images = images[kept]
            if unreached:  # call sites not reached in every pass: left out, said once
                kept = self._reached(targets, unreached, trainer.global_step)
                targets, scores = [targets[i] for i in kept], [scores[i] for i in kept]
                images = images[kept]
                if not targets:
                    return  # no call site every pass reached: drawn where a later event does
        with self.phase("render"):
            grids = self.render(targets, images)
        with self.phase("write"):
            step = trainer.global_step
            for name, image in grids.items():
                self.sink.image(self.tag(name), image, step)
            self.scores = {}
            for target, score in zip(targets, scores, strict=True):
                self.scores.setdefault(target.site or "classes", []).append(score)

    def _reached(self, targets: list[Target], unreached: set[str], step: int) -> list[int]:
        """The targets whose call site every optimisation pass reached; the others said once.

        A module called a number of times its input decides (adaptive computation) runs
        more or fewer times on the images being optimised than on the probe: a call site
        the probe had (``rec#1``) is not there in every pass (setups hunt 74).
        """
        sites = [s for s in self.sites() if s in unreached]
        self.warn_once(
            "unreached",
            f"leaves out {listed(sites)} at step {step}: the images it optimises change how "
            "many times the layer runs (a number of calls `forward` decides by its input), "
            "so some passes do not reach these call sites",
        )
        return [i for i, t in enumerate(targets) if t.site not in unreached]

    def _uncut(self, targets: list[Target], cut: set[str | None], step: int) -> list[int]:
        """The targets whose score carries a gradient back to the images; the others said once.

        A stem run under ``torch.no_grad()`` or ``.detach()`` in ``forward`` cuts the
        objective off from the images: only the smoothness and size penalties would move
        them, and the grids would show the penalties' output (setups hunt 75: written
        without a word). Every target cut: the monitor steps aside, as AdversarialMonitor
        does on the same model.

        Raises:
            NotApplicable: no target's score reaches the images.
        """
        if all(t.site in cut for t in targets):
            raise NotApplicable(
                f"{CUT_OFF}, and it optimises images along that gradient (without it only "
                "its smoothness and size penalties move them)"
            )
        names = [f"`{s}`" for s in self.sites() if s in cut]
        names += ["the class logits"] if None in cut else []
        self.warn_once(
            "cut",
            f"leaves out {listed(names, quote=False)} at step {step}: their scores carry no "
            f"gradient back to the model's input images {CUT_CAUSES}, so only the smoothness "
            "and size penalties would move their images",
        )
        return [i for i, t in enumerate(targets) if t.site not in cut]

    def render(self, targets: list[Target], images: Tensor) -> dict[str, Tensor]:
        """One captioned grid per call site (``ch {c}``) and one for the classes."""
        if images.dim() == 4 and images.shape[-1] > _MAX_SIDE:
            images = rendering.thumbnails(images, _MAX_SIDE)
        if images.dim() == 4 and images.shape[1] not in (1, 3):
            images = images.mean(1, keepdim=True)
        images01 = rendering.normalize(images, "per_image", dims=images.dim() - 1)
        rgb = rendering.to_rgb(rendering.to_uint8(images01))
        tiles = rendering.upscale_to(rgb, _TILE, max_side=4 * _TILE)  # wide strips capped
        groups: dict[str, list[Tensor]] = {}
        for target, tile in zip(targets, tiles, strict=True):
            text = f"ch {target.channel}" if target.site else f"class {target.channel}"
            groups.setdefault(target.site or "classes", []).append(labels.caption(tile, text))
        return {
            name: rendering.grid(group, nrow=min(8, len(group))) for name, group in groups.items()
        }
