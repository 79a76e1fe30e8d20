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

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.cam_calls import layer_gradients
from lightning_cnnviz.core.map_places import one_place
from lightning_cnnviz.core.outputs import NotApplicable, logits_from, one_row_per_image
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["CAM_METHODS", "FlatMapError", "NoMapError", "flat_map", "grad_cam", "layer_cams"]


class NoMapError(ValueError):
    """The layer's output is no map over the input's positions (a pooled vector, the logits).

    ``other_layer``: whether another layer could give one (not where the inputs have fewer
    dimensions than the layer's maps: no image to lay a map on), and the message does not
    already say which (``FlatMapError``'s does).
    """

    def __init__(self, message: str, other_layer: bool = True) -> None:
        super().__init__(message)
        self.other_layer = other_layer


class FlatMapError(NoMapError):
    """The layer's map has one position (``flat_map``); the message says what to pick."""

    def __init__(self, message: str) -> None:
        super().__init__(message, other_layer=False)


CAM_METHODS: tuple[str, ...] = ("gradcam", "hirescam", "guided_gradcam")
# Upsampling of a map to the input, by the input's dims: signals, images, volumes.
_INTERPOLATE = {3: "linear", 4: "bilinear", 5: "trilinear"}


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
        logits = logits_from(self.model(x), self.output_key)
        if torch.is_grad_enabled() and not logits.requires_grad:
            raise NotApplicable(
                "the model's output carries no gradient (a `forward` under "
                "`@torch.no_grad()`, or logits detached), and Grad-CAM needs one"
            )
        if logits.dim() < 2:
            raise ValueError(
                f"Grad-CAM needs (batch, classes) logits, the model returned shape "
                f"{tuple(logits.shape)}; pick the logits with `output_key`"
            )
        if logits.dim() > 2:  # dense (segmentation): per-position class scores
            return self._dense(logits)
        self.logits = logits.detach().float()
        index = logits.argmax(1) if self.target is None else self.target.to(logits.device)
        return logits.gather(1, index.view(-1, 1).long())

    def _dense(self, logits: Tensor) -> Tensor:
        """A class's score summed over the positions predicted as that class.

        The usual segmentation-CAM target; the class is ``target``, else the one predicted
        at most positions. ``self.logits`` keeps the scores averaged over positions.
        """
        scores = logits.flatten(2)  # (N, K, P)
        self.logits = scores.detach().float().mean(2)
        predicted = scores.argmax(1)  # (N, P)
        if self.target is None:
            index = torch.mode(predicted, dim=1).values
        else:
            index = self.target.to(logits.device).long()
        mask = (predicted == index.view(-1, 1)).to(scores.dtype)
        picked = scores.gather(1, index.view(-1, 1, 1).expand(-1, 1, scores.shape[2]))[:, 0]
        return (picked * mask).sum(1, keepdim=True)


@contextlib.contextmanager
def _unused_layer(output_key: Any) -> Iterator[None]:
    """Say in words when the scores do not depend on the layer (autograd's bare error)."""
    try:
        yield
    except RuntimeError as err:
        if "not have been used in the graph" not in str(err):
            raise
        raise ValueError(
            "the scores Grad-CAM differentiates do not depend on the selected layer through "
            "autograd: its output is cut off before them (a `.detach()`, `torch.no_grad()` or "
            "a non-differentiable step in `forward` after it: then the layer trains no more "
            "than it explains), or the output read is not the logits "
            f"(output_key={output_key!r}: pick them with `output_key`); or pick another "
            "layer with `layers`"
        ) from err


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    *,
    output_key: str | int | None = None,
    method: str = "gradcam",
) -> tuple[Tensor, Tensor]:
    """Grad-CAM of ``layer`` for a batch, upsampled (linear/bilinear/trilinear) to the input size.

    Args:
        model: the classifier or segmentation net (unwrapped); its ``training`` flags
            are restored.
        layer: a module of ``model`` with output shaped like ``x`` ((N, C, h, w) for
            images). A module called several times per forward pass is attributed at
            its deepest call, a parallel branch's (a flipped copy's) passed over
            (``guided_gradcam``: Captum's, at its last call).
        x: input batch (N, C, L), (N, C, H, W) or (N, C, D, H, W), in the dtype of the
            model's parameters.
        target: class per sample ((N,) tensor), one class for all (int), or
            ``None`` for the predicted class.
        output_key: picks the logits from a tuple/dict model output.
        method: ``"gradcam"`` (``LayerGradCam``, ``relu_attributions=True``),
            ``"hirescam"`` (HiResCAM, Draelos & Carin 2020: gradient times
            activation summed over channels, then ReLU, as
            ``LayerGradientXActivation``) or ``"guided_gradcam"``
            (``GuidedGradCam``; the map is the absolute value summed over input
            channels). Grad-CAM weighs each channel by its gradient averaged
            over space, so it cannot show *where* a flatten + linear head reads
            a channel: a cue that a model reads by its position (a marker in a
            corner) stays invisible. HiResCAM keeps the gradient per position
            and shows it; on a global-average-pooling head both agree.

    Returns:
        ``(cam, logits)``: non-negative float32 maps shaped like the input's positions
        ((N, L) signals, (N, H, W) images, (N, D, H, W) volumes) and float32 logits (N, K)
        (for dense (N, K, H, W) logits: the scores averaged over positions; the CAM's
        target is then the class's score summed over the positions predicted as it).

    Raises:
        NoMapError: the layer's output is not shaped like the input, or is 1x1 (``flat_map``).
        ValueError: the logits have no class dim.
    """
    if method != "guided_gradcam":
        cams, logits = layer_cams(model, layer, x, target, output_key=output_key,
                                  methods=(method,))  # fmt: skip
        return cams[method], logits
    from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam

    score = _Score(model, _targets(target, x), output_key)
    with probe_mode(model, grad=True), warnings.catch_warnings(), _unused_layer(output_key):
        warnings.simplefilter("ignore")  # GuidedBackprop announces its temporary ReLU hooks
        inputs = x.detach().clone().requires_grad_(True)
        mode = _INTERPOLATE.get(x.dim(), "bilinear")
        # Captum's GuidedGradCam in its two parts, to see the layer's map before it is spread
        coarse = LayerGradCam(score, layer).attribute(inputs, target=0, relu_attributions=True)
        flat_map(tuple(coarse.shape))
        guided = GuidedBackprop(score).attribute(inputs, target=0)
        attr = guided * LayerAttribution.interpolate(coarse, tuple(x.shape[2:]), mode)
        cam = attr.detach().float().abs().sum(1)
    assert score.logits is not None
    return cam, score.logits


def layer_cams(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    *,
    output_key: str | int | None = None,
    methods: tuple[str, ...] = ("gradcam", "hirescam"),
) -> tuple[dict[str, Tensor], Tensor]:
    """Grad-CAM and HiResCAM of ``layer`` from one forward and one backward pass.

    Both read the layer's activations ``A`` and the score's gradient ``G`` w.r.t. them (as
    Captum's ``compute_layer_gradients_and_eval``, what ``LayerGradCam`` and
    ``LayerGradientXActivation`` call; a parallel call passed over: ``cam_calls.py``):
    Grad-CAM is ``relu(sum_c mean(G_c) A_c)``, HiResCAM ``relu(sum_c G_c A_c)``. Arguments
    and maps as ``grad_cam``.

    Example::

        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
        ...                     nn.Linear(4 * 8 * 8, 3))
        >>> x = torch.randn(2, 1, 8, 8)
        >>> cams, _ = layer_cams(net, net[1], x)
        >>> alone, _ = grad_cam(net, net[1], x, method="hirescam")
        >>> sorted(cams), torch.allclose(cams["hirescam"], alone)
        (['gradcam', 'hirescam'], True)
    """
    from captum.attr import LayerAttribution

    score = _Score(model, _targets(target, x), output_key)
    with probe_mode(model, grad=True), _unused_layer(output_key):
        inputs = x.detach().clone().requires_grad_(True)
        grads, acts = layer_gradients(score, layer, inputs)
        one_row_per_image("the CAM's layer", acts, len(x))
        if acts.dim() > x.dim():  # setups hunt 26: a waveform's spectrogram, made in forward
            raise NoMapError(
                f"Grad-CAM lays its map on the input, and the inputs {tuple(x.shape)} have "
                f"fewer dimensions than the layer's maps {tuple(acts.shape)} (`forward` turns "
                "them into maps, e.g. a spectrogram of a signal): there is no image to lay "
                "it on",
                other_layer=False,
            )
        if acts.is_complex():  # setups hunt 48: "clamp is not supported for complex types"
            raise NoMapError(
                f"the layer's output is complex ({acts.dtype}): Grad-CAM weighs real maps by "
                "their gradients, and a complex map has no sign to keep"
            )
        if acts.dim() != x.dim():
            raise NoMapError(
                f"Grad-CAM needs a layer whose output is {x.dim()}-D like the input "
                f"{tuple(x.shape)}; the selected layer gives a map of shape {tuple(acts.shape)}"
            )
        flat_map(tuple(acts.shape))
        space = tuple(range(2, acts.dim()))
        maps = {
            "gradcam": lambda: (grads.mean(space, keepdim=True) * acts).sum(1, keepdim=True),
            "hirescam": lambda: (grads * acts).sum(1, keepdim=True),
        }
        mode = _INTERPOLATE.get(x.dim(), "bilinear")
        cams = {
            m: LayerAttribution.interpolate(
                maps[m]().clamp_min(0), tuple(x.shape[2:]), interpolate_mode=mode
            ).detach().float()[:, 0]
            for m in methods
        }  # fmt: skip
    assert score.logits is not None
    return cams, score.logits


def flat_map(shape: tuple[int, ...]) -> None:
    """Refuse a layer whose map has one position: its CAM is one value per image.

    Raises:
        FlatMapError: the map is 1x1 (``core.map_places``), with why and what to pick.

    Example::

        >>> flat_map((2, 4, 3, 3))
        >>> flat_map((2, 4, 1, 1))
        Traceback (most recent call last):
        ...
        lightning_cnnviz.core.cam.FlatMapError: its output has one position (1x1), ...
    """
    size = one_place(shape)
    if size:
        raise FlatMapError(
            f"its output has one position ({size}), so its Grad-CAM is one value per image "
            "with no place to show (every tile one colour), and the CAM's scores (on the "
            "object, concentration, drift) would measure nothing; name a layer whose output "
            "has more positions, or leave the layer setting at `'auto'` to pick one"
        )


def _targets(target: Tensor | int | None, x: Tensor) -> Tensor | None:
    """``target`` as one class per sample (an int for all)."""
    if isinstance(target, int):
        return torch.full((x.shape[0],), target, dtype=torch.long)
    return target
