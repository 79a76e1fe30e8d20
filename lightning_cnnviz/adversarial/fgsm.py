"""Adversarial sensitivity: an FGSM attack on the probe, and the picture of what it changed.

Nothing here knows about Lightning. ``fgsm`` runs ``captum.robust.FGSM``
(untargeted, cross-entropy against the true labels) on a model in probe mode.
Captum takes the gradient with ``torch.autograd.grad`` w.r.t. the input only
(``captum._utils.gradient.compute_gradients``), so no ``param.grad`` is
written; ``grads_untouched`` checks it anyway. ``epsilon`` is in pixel units
([0, 1] images): with the data's ``mean``/``std`` it becomes ``epsilon / std``
per channel in the model's normalised units, and the attacked image is clamped
to the normalised images of pixel values 0 and 1. Without them, ``epsilon`` is
in the model's input units and nothing is clamped. Captum skips pixels whose
gradient is below ``1e-6``; a confident, trained model has many of those, so
the threshold is set to 0 (the textbook FGSM).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> x, y = torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 0])
    >>> adv = fgsm(net, x, y, 0.1, mean=[0.5], std=[0.25])
    >>> sorted(set((adv - x).abs().flatten().tolist()))  # 0.1 pixel = 0.4 normalised
    [0.4000000059604645]
    >>> net[1].weight.grad is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_cnnviz.core import labels, rendering
from lightning_cnnviz.core.guard import grads_untouched
from lightning_cnnviz.core.inputs import Norm, input_bounds
from lightning_cnnviz.core.outputs import NotApplicable, logits_from
from lightning_cnnviz.core.probe_call import CUT_OFF
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["accuracy", "example_rows", "fgsm"]

_TILE = 56


def fgsm(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    epsilon: float,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output_key: Any = None,
) -> Tensor:
    """The FGSM-attacked copy of ``x`` (detached; ``x`` itself is not changed).

    Args:
        model: the classifier (unwrapped); flags restored, parameters untouched.
        x: inputs ``(N, C, H, W)`` in the model's (normalised) units.
        labels: true classes ``(N,)``: the attack raises their cross-entropy.
        epsilon: step size in pixel units (with ``mean``/``std``), else in input units.
        mean: per-channel mean of the inputs' normalisation, if known (one value: all channels).
        std: per-channel standard deviation of the inputs' normalisation, if known.
        output_key: picks the logits from a tuple/dict model output.
    """
    from captum.robust import FGSM

    def forward(inputs: Tensor) -> Tensor:
        return logits_from(model(inputs), output_key).float()

    def loss(logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target, reduction="none")

    attack = FGSM(forward, loss)
    attack.zero_thresh = 0.0
    mask = None
    norm = None if mean is None or std is None else Norm(tuple(mean), tuple(std))
    bounds = input_bounds(norm, x.shape[1])
    if bounds is not None:
        shape = (1, -1, *([1] * (x.dim() - 2)))
        low, high = (b.to(x).reshape(shape) for b in bounds)
        attack.bound = lambda t: torch.maximum(torch.minimum(t, high), low)
        mask = (high - low).expand_as(x).contiguous()  # 1 / std: pixel units to input units
    inputs = x.detach().clone().requires_grad_(True)  # ours; Captum would warn otherwise
    with grads_untouched(model), probe_mode(model, grad=True):
        try:
            adv = attack.perturb(inputs, epsilon, labels.to(x.device).long(), mask=mask)
        except RuntimeError as err:
            if not any(cut in str(err) for cut in _CUT_OFF):
                raise
            raise NotApplicable(f"{CUT_OFF}, and the attack steps along that gradient") from err
    return adv.detach()


# autograd's words for an input the outputs do not depend on through the graph (setups
# hunt 24: a backbone run under `torch.no_grad()` gave "Set allow_unused=True ...")
_CUT_OFF = ("appears to not have been used in the graph", "does not require grad")


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Share of ``argmax(logits) == labels`` (a 0-d tensor on the logits' device)."""
    return (logits.argmax(1) == labels.to(logits.device)).float().mean()


def _tile(image: Tensor, text: str, frame: bool = False) -> Tensor:
    tile = rendering.upscale_to(rendering.to_rgb(image), _TILE, max_side=4 * _TILE)
    tile = rendering.border(tile, (255, 60, 60)) if frame else tile
    return labels.caption(tile, text)


def example_rows(
    images01: Tensor,
    attacked01: Tensor,
    epsilon: float,
    cams: tuple[Tensor, Tensor],
    fmaps: tuple[Tensor, Tensor],
    labels: list[int] | None,
    predicted: tuple[list[int], list[int]],
    fmap_name: str = "fmap",
) -> Tensor:
    """One row per sample: input, perturbation, attacked input, CAM before/after, maps before/after.

    Args:
        images01: clean inputs as ``[0, 1]`` pictures ``(N, C, H, W)``.
        attacked01: the attacked inputs, the same way.
        epsilon: the attack's size in the pictures' units (the perturbation's colour scale,
            coolwarm, symmetric: blue = darker, red = brighter).
        cams: Grad-CAM maps ``(N, H, W)`` before and after (each normalised per image).
        fmaps: feature maps ``(N, h, w)`` (channel means) before and after, normalised
            per sample over the pair so that they compare.
        labels: true classes (or ``None``).
        predicted: classes before and after; a row whose prediction flipped has a red
            frame around the attacked input.
        fmap_name: caption of the feature-map tiles (the layer's name).
    """
    delta = (attacked01 - images01).float().mean(1)
    perturbation = rendering.apply_colormap(
        rendering.normalize(delta, "fixed", value_range=(-epsilon, epsilon)), "coolwarm"
    )
    pair = rendering.normalize(torch.stack(fmaps, 1), "per_image", dims=3)
    gray = rendering.to_uint8(images01.float())
    gray_adv = rendering.to_uint8(attacked01.float())
    heat = [rendering.normalize(cam, "per_image") for cam in cams]
    rows = []
    for i in range(images01.shape[0]):
        before, after = predicted[0][i], predicted[1][i]
        truth = f"y{labels[i]} " if labels is not None else ""
        tiles = [
            _tile(gray[i], f"{truth}p{before}"),
            _tile(perturbation[i], f"+-{epsilon:g}"),
            _tile(gray_adv[i], f"p{after}", frame=after != before),
            _tile(rendering.overlay(images01[i], heat[0][i]), "cam"),
            _tile(rendering.overlay(attacked01[i], heat[1][i]), "cam adv"),
            _tile(rendering.apply_colormap(pair[i, 0], "viridis"), fmap_name),
            _tile(rendering.apply_colormap(pair[i, 1], "viridis"), f"{fmap_name} adv"),
        ]
        rows.append(rendering.hstack(tiles, gap=2))
    return rendering.vstack(rows, gap=4)
