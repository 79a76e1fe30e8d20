"""Grad-CAM through Captum, safe to run in the middle of training.

Nothing here knows about Lightning. ``grad_cam`` runs ``captum.attr.LayerGradCam``
(``relu_attributions=True``), HiResCAM (``LayerGradientXActivation``) or
``captum.attr.GuidedGradCam`` on a model in probe mode (eval, flags restored, out
of ``inference_mode``, autograd on, autocast off) and upsamples the map to the
input size with bilinear interpolation (``LayerAttribution.interpolate``).
Captum differentiates with ``torch.autograd.grad`` w.r.t. the layer's output
(and, for guided Grad-CAM, the input) only, so no ``param.grad`` is ever
written; its hooks live inside its call. The input is a detached clone that
requires grad, so that a frozen backbone (``requires_grad=False`` before the
layer) still has a graph.

The class score is picked inside the forward function (``target`` per sample,
or the argmax), so one forward and one backward pass give the CAM *and* the
logits that label the tiles. Which layer to look at: ``core.target_layer``.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ...                     nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    >>> cam, logits = grad_cam(net, net[2], torch.randn(2, 1, 8, 8))
    >>> tuple(cam.shape), tuple(logits.shape), bool((cam >= 0).all())
    ((2, 8, 8), (2, 3), True)
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.capture import first_tensor, probe_mode

__all__ = ["CAM_METHODS", "grad_cam"]

CAM_METHODS: tuple[str, ...] = ("gradcam", "hirescam", "guided_gradcam")


class _Score(nn.Module):
    """The model followed by "pick one logit per sample": (N, 1) scores for Captum.

    Keeps the (detached, float32) logits of its last call for the tile labels.
    A ``Module`` (holding the model) so that ``GuidedBackprop`` finds its ReLUs.
    """

    def __init__(self, model: nn.Module, target: Tensor | None, output_key: Any) -> None:
        super().__init__()
        self.model = model
        self.target = target
        self.output_key = output_key
        self.logits: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        logits = first_tensor(self.model(x), self.output_key)
        if logits.dim() != 2:
            raise ValueError(
                f"Grad-CAM needs (batch, classes) logits, the model returned shape "
                f"{tuple(logits.shape)}; pick the logits with `output_key`"
            )
        self.logits = logits.detach().float()
        index = logits.argmax(1) if self.target is None else self.target.to(logits.device)
        return logits.gather(1, index.view(-1, 1).long())


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    *,
    output_key: str | int | None = None,
    method: str = "gradcam",
) -> tuple[Tensor, Tensor]:
    """Grad-CAM of ``layer`` for a batch, upsampled (bilinear) to the input size.

    Args:
        model: the classifier (unwrapped); its ``training`` flags are restored.
        layer: a module of ``model`` with (N, C, h, w) output. A module called
            several times per forward pass is attributed at its last call.
        x: input batch (N, C, H, W), in the dtype of the model's parameters.
        target: class per sample ((N,) tensor), one class for all (int), or
            ``None`` for the predicted class.
        output_key: picks the logits from a tuple/dict model output.
        method: ``"gradcam"`` (``LayerGradCam``, ``relu_attributions=True``),
            ``"hirescam"`` (HiResCAM, Draelos & Carin 2020: gradient times
            activation summed over channels, then ReLU, via
            ``LayerGradientXActivation``) or ``"guided_gradcam"``
            (``GuidedGradCam``; the map is the absolute value summed over input
            channels). Grad-CAM weighs each channel by its gradient averaged
            over space, so it cannot show *where* a flatten + linear head reads
            a channel: a cue that a model reads by its position (a marker in a
            corner) stays invisible. HiResCAM keeps the gradient per position
            and shows it; on a global-average-pooling head both agree.

    Returns:
        ``(cam, logits)``: non-negative float32 maps (N, H, W) and float32 logits (N, K).

    Raises:
        ValueError: the layer's output is not (N, C, h, w), or the logits are not 2-D.
    """
    from captum.attr import (
        GuidedGradCam,
        LayerAttribution,
        LayerGradCam,
        LayerGradientXActivation,
    )

    if isinstance(target, int):
        target = torch.full((x.shape[0],), target, dtype=torch.long)
    score = _Score(model, target, output_key)
    with probe_mode(model, grad=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GuidedBackprop announces its temporary ReLU hooks
        inputs = x.detach().clone().requires_grad_(True)
        if method == "guided_gradcam":
            attr = GuidedGradCam(score, layer).attribute(
                inputs, target=0, interpolate_mode="bilinear"
            )
            cam = attr.detach().float().abs().sum(1)
        else:
            if method == "hirescam":
                attr = LayerGradientXActivation(score, layer).attribute(inputs, target=0)
                attr = attr.sum(1, keepdim=True).clamp_min(0) if attr.dim() == 4 else attr
            else:
                attr = LayerGradCam(score, layer).attribute(
                    inputs, target=0, relu_attributions=True
                )
            if attr.dim() != 4:
                raise ValueError(
                    "Grad-CAM needs a layer with (N, C, H, W) output; the selected layer "
                    f"gives a map of shape {tuple(attr.shape)}"
                )
            up = LayerAttribution.interpolate(attr, tuple(x.shape[2:]), interpolate_mode="bilinear")
            cam = up.detach().float()[:, 0]
    assert score.logits is not None
    return cam, score.logits
