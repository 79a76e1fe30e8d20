"""``AdversarialMonitor``: accuracy under a small FGSM attack, and what it changes inside."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.adversarial import fgsm as robustness
from lightning_cnnviz.core import rendering
from lightning_cnnviz.core.cam import NoMapError
from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.checks import check_int, check_number
from lightning_cnnviz.core.inputs import (
    Norm,
    display_channels,
    id_inputs,
    norm_stats,
    to_image01,
)
from lightning_cnnviz.core.layer_types import CONV_TYPES
from lightning_cnnviz.core.monitor import Monitor, with_probe
from lightning_cnnviz.core.outputs import NotApplicable, one_row_per_image
from lightning_cnnviz.core.selection import named_layers, of_type, resolve_layers, unwrap_model
from lightning_cnnviz.core.target_layer import auto_cam_layer
from lightning_cnnviz.core.token_cam import any_grad_cam


class AdversarialMonitor(Monitor, section="adversarial"):
    """Accuracy of the probe under an FGSM attack (``captum.robust.FGSM``) over time.

    Each event attacks the validation probe with one signed-gradient step of
    size ``epsilon`` (pixel units: ``epsilon / std`` in the model's normalised
    units when the data module has ``mean``/``std``, clamped to valid pixels)
    and writes ``adversarial/accuracy_clean`` and ``adversarial/accuracy_attacked``
    (without labels: agreement with the clean predictions, only the latter). For
    the first ``samples_shown`` probe images, ``adversarial/examples`` shows one
    row each: input, perturbation (coolwarm, symmetric), attacked input (red frame
    where the prediction flipped), Grad-CAM before and after, and the channel
    mean of the watched layer's feature maps before and after. The model's
    parameters and ``param.grad`` are never written (checked on every event).

    Args:
        layers: whose feature maps are shown; ``"auto"`` = the first conv layer.
        epsilon: attack size, in [0, 1] pixel units (input units without ``std``).
        samples_shown: rows of the example image (0: scalars only).
        cam_layer: Grad-CAM's layer; ``"auto"`` = the output of the last conv block.
        num_samples: probe size (default 64: the accuracies' sample).
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``tag_prefix``, ``strict``,
            ``seed``, ``budget``).

    Example::

        >>> from lightning_cnnviz import AdversarialMonitor
        >>> monitor = AdversarialMonitor(epsilon=0.05, samples_shown=3)
        >>> monitor.tag("accuracy_attacked")
        'adversarial/accuracy_attacked'
    """

    auto_description = "it shows the first conv layer's maps"
    without_layers = "the attack's accuracy scalars only, no `examples` image"
    needs_gradients = True

    def __init__(
        self,
        layers: str | list[str] = "auto",
        epsilon: float = 0.1,
        samples_shown: int = 4,
        cam_layer: str = "auto",
        num_samples: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, num_samples=num_samples, **kwargs)
        check_number("epsilon", epsilon, low=0.0)
        if epsilon <= 0:
            raise ValueError(f"`epsilon` must be a positive number, got {epsilon!r}")
        if samples_shown != 0:
            check_int("samples_shown", samples_shown)
        if not isinstance(cam_layer, str) or not cam_layer:
            raise ValueError(f"`cam_layer` must be 'auto' or a layer name, got {cam_layer!r}")
        self.epsilon, self.samples_shown, self.cam_layer = epsilon, samples_shown, cam_layer
        self._cam: tuple[str, nn.Module] | None = None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._cam = None

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        return of_type(*CONV_TYPES)(model, available)[:1]

    def cam_module(self, model: nn.Module, x: Tensor) -> tuple[str, nn.Module] | None:
        """Grad-CAM's layer: ``cam_layer``, or the last conv block's output (traced once).

        Returns:
            ``(name, module)``, or ``None`` when ``"auto"`` finds no layer with a spatial
            output (all maps 1x1): the scalars need no CAM, only the image does.
        """
        if self._cam is None:
            if self.cam_layer == "auto":
                available = named_layers(model)
                name, _ = auto_cam_layer(model, available, x, self._logits_key)
                if name is None:
                    return None
                self._cam = (name, available[name])
            else:
                self._cam = next(iter(resolve_layers(model, self.cam_layer).items()))
        return self._cam

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model, step = unwrap_model(pl_module), trainer.global_step
        with self.phase("capture"):
            x, norm = self.probe_input(trainer, pl_module), norm_stats(trainer)
            if words := id_inputs(x):
                raise NotApplicable(f"{words}: an attack perturbs continuous inputs")
            norm = norm if norm is not None and norm.fits(x.shape[1]) else None
            labels = self.probe(trainer).labels
            key = self.logits_key(trainer, pl_module)
            with with_probe(model):
                clean = self.logits_of(model(x)).float()  # steps aside on dense logits
            if clean.shape[1] < 2 or (labels is not None and int(labels.max()) >= clean.shape[1]):
                raise NotApplicable(_classes_text(clean.shape[1], labels))
            target = clean.argmax(1) if labels is None else labels.to(x.device)
            mean, std = norm if norm is not None else (None, None)
            adv = robustness.fgsm(model, x, target, self.epsilon, mean=mean, std=std,
                                  output_key=key)  # fmt: skip
            with with_probe(model):
                attacked = self.logits_of(model(adv)).float()
        with self.phase("compute"):
            names, values = ["accuracy_attacked"], [robustness.accuracy(attacked, target)]
            if labels is not None:
                names, values = (
                    ["accuracy_clean", *names],
                    [robustness.accuracy(clean, target), *values],
                )
            host = torch.stack(values).tolist()
            scalars = {self.tag(n): v for n, v in zip(names, host, strict=True)}
        with self.phase("write"):  # the scalars first: they hold whatever the image does
            self.sink.scalars(scalars, step)
        if not self.selected:  # no conv layer (`without_layers`, said once)
            return
        if x.dim() != 4:
            self.warn_once(
                "examples",
                "the `examples` image shows images (N, C, H, W); this model's inputs are "
                f"{x.dim()}-D: the accuracy scalars only",
            )
            return
        image = self.examples(model, x, adv, clean, attacked, labels, norm)
        if image is not None:
            with self.phase("write"):
                self.sink.image(self.tag("examples"), image, step)

    def examples(
        self,
        model: nn.Module,
        x: Tensor,
        adv: Tensor,
        clean: Tensor,
        attacked: Tensor,
        labels: Tensor | None,
        norm: Norm | None,
    ) -> Tensor | None:
        """The ``adversarial/examples`` image of the first ``samples_shown`` probe samples.

        ``norm``: the inputs' normalisation when it fits their channels, else ``None``.
        """
        k = min(self.samples_shown, x.shape[0])
        if k == 0:
            return None
        site = self.sites()[0]
        if (cam := self.cam_module(model, x)) is None:
            # Checked before the capture pass; `selected = {}` ends the image for this fit
            # (the next setup resolves again), so later events skip the trace.
            self.selected = {}
            self.warn_once(
                "no_cam",
                "`cam_layer='auto'` found no layer with a spatial output above 1x1 for "
                f"Grad-CAM: {self.without_layers} (`cam_layer=` names one)",
            )
            return None
        with self.phase("compute"):
            with with_probe(model), LayerCapture(self.selected, shared=self.shared) as cap:
                model(torch.cat([x[:k], adv[:k]]))
            if site not in cap.outputs:  # defined, but never called by forward()
                self.warn_once(
                    "not_called",
                    f"`{site}` is not called by the model's forward(): the accuracy scalars "
                    "only, no `examples` image (name a layer it calls with `layers=`)",
                )
                return None
            fmap = one_row_per_image(f"`{site}`", cap.outputs[site], 2 * k).float()
            fmap = fmap.flatten(1, -3).mean(1) if fmap.dim() > 3 else fmap
            key = self._logits_key
            try:
                cams = tuple(any_grad_cam(model, cam[1], t[:k], output_key=key)[0]
                             for t in (x, adv))  # fmt: skip
            except NoMapError as err:  # a named 1x1 layer (setups hunt 82): the scalars go on
                self.selected = {}
                self.warn_once("no_cam", f"no `examples` image: the Grad-CAM layer "
                               f"`{cam[0]}` gives no CAM: {err}")  # fmt: skip
                return None
        with self.phase("render"):
            if norm is not None:  # de-normalised pictures; epsilon is in their units
                epsilon = self.epsilon
                before, after = to_image01(x[:k], norm), to_image01(adv[:k], norm)
            else:  # one range for both, so that the perturbation shows
                low, high = torch.stack(torch.aminmax(x[:k].float())).tolist()
                before, after = (
                    rendering.normalize(display_channels(t[:k]), "fixed", value_range=(low, high))
                    for t in (x, adv)
                )
                epsilon = self.epsilon / max(high - low, 1e-12)
            predicted = (clean[:k].argmax(1).tolist(), attacked[:k].argmax(1).tolist())
            return robustness.example_rows(
                before.float().cpu(), after.float().cpu(), epsilon,
                (cams[0].cpu(), cams[1].cpu()), (fmap[:k].cpu(), fmap[k:].cpu()),
                None if labels is None else labels[:k].tolist(), predicted, site,
            )  # fmt: skip


def _classes_text(outputs: int, labels: Tensor | None) -> str:
    """Why the attack cannot run: no logit per class to raise the true class's loss on.

    Example::

        >>> _classes_text(1, torch.tensor([0, 9]))  # doctest: +NORMALIZE_WHITESPACE
        'the model gives 1 output per image for labels 0 to 9 (a one-logit discriminator or
        binary head?): the attack needs one logit per class'
        >>> _classes_text(5, torch.tensor([0, 9]))[:56]
        'the model gives 5 outputs per image for labels 0 to 9: t'
    """
    seen = "" if labels is None else f" for labels 0 to {int(labels.max())}"
    guess = " (a one-logit discriminator or binary head?)" if outputs == 1 else ""
    plural = "" if outputs == 1 else "s"
    return (
        f"the model gives {outputs} output{plural} per image{seen}{guess}: the attack needs "
        "one logit per class"
    )
