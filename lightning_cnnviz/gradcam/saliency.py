"""Input-gradient saliency maps (Captum ``Saliency``, ``IntegratedGradients``, ``NoiseTunnel``).

Nothing here knows about Lightning. One function, ``input_saliency``, gives a
non-negative float32 map (N, H, W) per image: the absolute attribution summed
over input channels. It runs in probe mode (eval, ``training`` flags restored,
out of ``inference_mode``, float32) with gradients taken w.r.t. a copy of the
input only, so ``param.grad`` is never written. ``NoiseTunnel`` (SmoothGrad)
draws its noise from a forked RNG seeded with ``seed``: the caller's global RNG
state is the same afterwards.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.0, 3.0], [0.0] * 4]))
    >>> x = torch.ones(1, 1, 2, 2)
    >>> input_saliency(net, x, torch.tensor([0]), "saliency")[0].tolist()
    [[1.0, 2.0], [0.0, 3.0]]
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.outputs import logits_from
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["SALIENCY_METHODS", "clip_peaks", "input_saliency"]

SALIENCY_METHODS: tuple[str, ...] = ("saliency", "integrated_gradients")


def input_saliency(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: str,
    *,
    output_key: str | int | None = None,
    baseline: float | Tensor = 0.0,
    smooth: bool = False,
    smooth_samples: int = 8,
    smooth_stdev: float = 0.15,
    ig_steps: int = 16,
    seed: int = 0,
) -> Tensor:
    """Saliency of ``target`` w.r.t. the input pixels: ``|attribution|`` summed over channels.

    Args:
        model: the classifier (unwrapped).
        x: input batch (N, C, H, W) in the dtype of the model's parameters.
        target: class per sample (N,), fixed up front so that scaled (Integrated
            Gradients) or noisy (SmoothGrad) copies are attributed to the same class.
        method: ``"saliency"`` (the plain gradient, Simonyan et al. 2014) or
            ``"integrated_gradients"`` (Sundararajan et al. 2017, from a constant
            ``baseline`` image).
        output_key: picks the logits from a tuple/dict model output.
        baseline: the Integrated Gradients baseline: a value or a ``(1, C, H, W)``
            image, in the model's input space (pass the normalised black, e.g. the
            low end of ``core.inputs.input_bounds``, to start from a black image).
        smooth: wrap the method in ``NoiseTunnel`` (SmoothGrad: the mean over noisy copies).
        smooth_samples: noisy copies per image.
        smooth_stdev: noise standard deviation as a share of the batch's value range.
        ig_steps: Integrated Gradients' steps from the baseline to the input.
        seed: seed of the SmoothGrad noise (a forked RNG; the global one is untouched).

    Returns:
        Non-negative float32 maps (N, H, W).
    """
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    if method not in SALIENCY_METHODS:
        raise ValueError(f"`method` must be one of {SALIENCY_METHODS}, got {method!r}")

    def logits(inputs: Tensor) -> Tensor:
        return logits_from(model(inputs), output_key)

    explainer: Any = Saliency(logits) if method == "saliency" else IntegratedGradients(logits)
    kwargs: dict[str, Any] = {"target": target.to(x.device).long()}
    if method == "saliency":
        kwargs["abs"] = False  # |.| below: after SmoothGrad's mean, as Smilkov et al.
    else:
        kwargs.update(baselines=baseline, n_steps=ig_steps, internal_batch_size=len(x))
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with probe_mode(model, grad=True), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        inputs = x.detach().clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum's notes on requires_grad of inputs
            if smooth:
                spread = float((x.amax() - x.amin()).clamp_min(1e-6)) * smooth_stdev
                attr = NoiseTunnel(explainer).attribute(
                    inputs, nt_type="smoothgrad", nt_samples=smooth_samples,
                    nt_samples_batch_size=len(x), stdevs=spread, **kwargs,
                )  # fmt: skip
            else:
                attr = explainer.attribute(inputs, **kwargs)
    return attr.detach().float().abs().sum(1) if attr.dim() >= 3 else attr.detach().float().abs()


def clip_peaks(maps: Tensor, quantile: float = 0.99) -> Tensor:
    """Clip each map (N, H, W) at its ``quantile``, so that per-image normalisation shows it.

    Gradient maps are dominated by a few pixels, which would leave the rest black.

    Example::

        >>> clip_peaks(torch.tensor([[[0.0, 1.0], [2.0, 100.0]]]), quantile=0.5).tolist()
        [[[0.0, 1.0], [1.5, 1.5]]]
    """
    flat = maps.flatten(1)
    top = flat.quantile(quantile, dim=1).view(-1, *([1] * (maps.dim() - 1)))
    return torch.minimum(maps, top)
