"""Grad-CAM on token grids (vision transformers, Swin's channels-last maps).

Nothing here knows about Lightning. Captum's ``LayerGradCam`` wants a layer with
(N, C, H, W) output; a transformer layer outputs tokens. ``token_grad_cam`` does
what it does on the token grid instead: one forward pass in probe mode with the
layer's output kept (through ``core.capture``, the only place hooks live), the
gradient of the chosen class score w.r.t. that output only
(``torch.autograd.grad``: no ``param.grad`` is written), both laid on the patch
grid by ``core.tokens.to_grid`` (prefix tokens dropped), then Grad-CAM
(channel weights = gradient averaged over the grid) or HiResCAM (gradient x
activation per position), ReLU, bilinear upsampling to the input size.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from lightning_cnnviz.core.tokens import Layout
    >>> class Tiny(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.embed, self.norm = nn.Conv2d(1, 8, 4, 4), nn.LayerNorm(8)
    ...         self.head = nn.Linear(8, 3)
    ...     def forward(self, x):
    ...         tokens = self.norm(self.embed(x).flatten(2).transpose(1, 2))
    ...         return self.head(tokens.mean(1))
    >>> net = Tiny()
    >>> layout = Layout("tokens", 0, (4, 4))
    >>> cam, logits = token_grad_cam(net, net.norm, torch.randn(2, 1, 16, 16), layout)
    >>> tuple(cam.shape), tuple(logits.shape), bool((cam >= 0).all())
    ((2, 16, 16), (2, 3), True)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_cnnviz.core import cam as C
from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.target_layer import trace_calls
from lightning_cnnviz.core.tokens import Layout, grid_layout, prefix_tokens, to_grid
from lightning_cnnviz.core.trace_images import trace_images

__all__ = ["any_grad_cam", "cam_layouts", "token_grad_cam"]


def cam_layouts(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    output_key: str | int | None = None,
) -> dict[str, Layout | None]:
    """How each layer's output lies on the patch grid (its last call), from one traced pass."""
    if x.dim() != 4:  # signals and volumes: no patch grid, every layer is Captum's
        return dict.fromkeys(layers)
    calls, _ = trace_calls(model, layers, x[: trace_images(model)], output_key)
    shapes = {call.name: call.shape for call in calls}
    prefix, image_hw = prefix_tokens(model), (int(x.shape[-2]), int(x.shape[-1]))
    return {
        name: grid_layout(shapes[name], image_hw, prefix, layers[name], batch=1)
        if name in shapes
        else None
        for name in layers
    }


def token_grad_cam(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    layout: Layout,
    target: Tensor | int | None = None,
    *,
    output_key: str | int | None = None,
    method: str = "gradcam",
) -> tuple[Tensor, Tensor]:
    """Grad-CAM (or HiResCAM) of a token layer for a batch, upsampled to the input size.

    Args:
        model: the classifier (unwrapped); its ``training`` flags are restored.
        layer: a module of ``model``; attributed at its last call.
        x: input batch (N, C, H, W), in the dtype of the model's parameters.
        layout: how ``layer``'s output lies on the patch grid (``cam_layouts``).
        target: class per sample, one class for all, or ``None`` (the prediction).
        output_key: picks the logits from a tuple/dict model output.
        method: ``"gradcam"`` or ``"hirescam"``.

    Returns:
        ``(cam, logits)``: non-negative float32 maps (N, H, W) and float32 logits (N, K)
        (a segmentation net's averaged over positions, as ``core.cam``).

    Raises:
        ValueError: ``guided_gradcam`` (it needs a conv layer), or logits below 2-D.
    """
    if method not in ("gradcam", "hirescam"):
        raise ValueError(f"`method={method!r}` needs a conv layer; on token layers use "
                         "'gradcam' or 'hirescam'")  # fmt: skip
    kept: list[Tensor] = []
    with (
        probe_mode(model, grad=True),
        LayerCapture({"layer": layer}, on_output=lambda site, out: kept.append(out)),
    ):
        if isinstance(target, int):
            target = torch.full((x.shape[0],), target, dtype=torch.long)
        # core.cam's class score: one logit per sample, or a segmentation class's positions
        scorer = C._Score(model, target, output_key)
        score = scorer(x.detach().clone().requires_grad_(True)).sum()
        (grad,) = torch.autograd.grad(score, kept[-1])
        assert scorer.logits is not None
        logits = scorer.logits
    act, grad = to_grid(kept[-1].detach().float(), layout), to_grid(grad.float(), layout)
    weights = grad if method == "hirescam" else grad.mean((2, 3), keepdim=True)
    cam = (weights * act).sum(1, keepdim=True).clamp_min(0)
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
    return cam[:, 0].detach(), logits


def any_grad_cam(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    *,
    output_key: str | int | None = None,
    method: str = "gradcam",
    layout: Layout | None = None,
) -> tuple[Tensor, Tensor]:
    """Grad-CAM of any layer: Captum's (``core.cam``) on a CNN map, ``token_grad_cam`` on tokens.

    ``layout`` (from ``cam_layouts``) saves the traced pass that finds it when not given.
    """
    if layout is None and x.dim() == 4:
        layout = cam_layouts(model, {"layer": layer}, x, output_key)["layer"]
    if layout is not None and layout.kind != "nchw":
        C.flat_map((len(x), 0, *layout.hw))  # a 1x1 token grid: one value per image too
        return token_grad_cam(model, layer, x, layout, target, output_key=output_key,
                              method=method)  # fmt: skip
    return C.grad_cam(model, layer, x, target, output_key=output_key, method=method)
