"""Grad-CAM through Captum, the layer Grad-CAM looks at, and the CAM metrics over time.

Nothing here knows about Lightning. ``grad_cam`` runs ``captum.attr.LayerGradCam``
(``relu_attributions=True``) or ``captum.attr.GuidedGradCam`` on a model in
probe mode (eval, flags restored, out of ``inference_mode``, autograd on,
autocast off) and upsamples the map to the input size with bilinear
interpolation (``LayerAttribution.interpolate``). Captum differentiates with
``torch.autograd.grad`` w.r.t. the layer's output (and, for guided Grad-CAM, the
input) only, so no ``param.grad`` is ever written; its hooks live inside its
call. The input is a detached clone that requires grad, so that a frozen
backbone (``requires_grad=False`` before the layer) still has a graph.

The class score is picked inside the forward function (``target`` per sample,
or the argmax), so one forward and one backward pass give the CAM *and* the
logits that label the tiles.

Metrics, per image (``NaN`` where undefined; ``means_to_host`` averages them):

* ``concentration``: share of the CAM's mass in its top 10% of pixels
  (0.1 for a flat map, 1.0 when all mass is in a tenth of the image);
* ``on_object``: share of the CAM's mass inside the foreground mask: input
  pixels brighter than a threshold after de-normalisation, in connected
  components (8-neighbourhood) of at least a quarter of the largest one's area,
  so that a small isolated bright blob (a watermark, a planted marker, noise)
  does not count as the object;
* ``drift``: ``1 - Pearson correlation`` with the same image's CAM at the
  previous log (0 = unchanged, 1 = unrelated, 2 = inverted).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ...                     nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    >>> cam, logits = grad_cam(net, net[2], torch.randn(2, 1, 8, 8))
    >>> tuple(cam.shape), tuple(logits.shape), bool((cam >= 0).all())
    ((2, 8, 8), (2, 3), True)
    >>> flat, eye = torch.ones(1, 10, 10), torch.eye(10)[None]
    >>> round(float(concentration(flat)), 6), round(float(drift(flat + eye, 2 * eye)), 6)
    (0.1, 0.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_cnnviz.core.capture import LayerCapture, first_tensor, model_device, probe_mode

__all__ = [
    "RAW_TYPES",
    "SKIP_TYPES",
    "TOP_SHARE",
    "Call",
    "blank_cams",
    "block_output",
    "cam_grid",
    "cam_metrics",
    "components",
    "concentration",
    "drift",
    "fell_off",
    "find_misclassified",
    "foreground",
    "grad_cam",
    "means_to_host",
    "on_object",
    "on_object_findings",
    "on_object_text",
    "trace_calls",
    "train_val_gap",
]

TOP_SHARE = 0.1  # ``concentration``: the top 10% of pixels
# ``on_object_findings``: train on_object below 0.5x its first value or 0.2 below its maximum;
DROP_RATIO, DROP_MARGIN = 0.5, 0.2
# train on_object below val's by 0.1 and below 0.75x val's, 2 logs in a row.
GAP_MARGIN, GAP_RATIO, GAP_PATIENCE = 0.1, 0.75, 2
# Pass-through modules ``block_output`` never picks (they repeat what came before).
SKIP_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
)
# Modules whose output is a block's *raw* output (before its activation).
RAW_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d,
)  # fmt: skip


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


@dataclass(frozen=True)
class Call:
    """One call of a module during the shape-tracing probe pass (``trace_calls``).

    Attributes:
        name: the module's name; ``index``: which call of it (0, 1, ... for a shared module).
        shape: its output shape.
        first_with_output: position (in the list of calls) of the first call that
            returned this very tensor object (a ``Sequential`` returns its last
            child's output, an in-place ReLU its input).
        feeds_next: its output is exactly the input of the module called next
            (``False`` when a functional op such as ``F.relu`` came in between).
    """

    name: str
    index: int
    shape: tuple[int, ...]
    first_with_output: int
    feeds_next: bool


def trace_calls(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    output_key: str | int | None = None,
) -> tuple[list[Call], tuple[int, ...]]:
    """One probe pass (use one sample): every call of ``layers`` in the order it finished.

    Returns:
        ``([Call, ...], model_output_shape)`` (``()`` when the output holds no tensor).
    """
    raw: list[tuple[str, int, Tensor, Tensor]] = []
    seen: dict[str, int] = {}

    def record(site: str, out: Tensor) -> None:
        name = site.rpartition("#")[0]
        seen[name] = seen.get(name, -1) + 1
        raw.append((name, seen[name], out, out.detach().float().clone()))

    capture = LayerCapture(layers, shared=set(layers), inputs=True, on_output=record)
    with probe_mode(model), capture:
        output = model(x)
    calls = []
    first: dict[int, int] = {}
    for k, (name, index, out, kept) in enumerate(raw):
        nxt = capture.inputs.get(f"{raw[k + 1][0]}#{raw[k + 1][1]}") if k + 1 < len(raw) else None
        feeds = nxt is not None and nxt.shape == out.shape and torch.equal(nxt.float(), kept)
        first_k = first.setdefault(id(out), k)
        calls.append(Call(name, index, tuple(out.shape), first_k, feeds))
    try:
        shape = tuple(first_tensor(output, output_key).shape)
    except (TypeError, KeyError, IndexError):
        shape = ()
    return calls, shape


def _spatial_size(shape: tuple[int, ...]) -> int:
    return math.prod(shape[2:]) if len(shape) == 4 else 0


def _is_logits_head(module: nn.Module, rest: list[Call], num_logits: int) -> bool:
    """A 1x1 conv to ``num_logits`` channels after which no spatial map has other channels.

    The second half tells a head (SqueezeNet's classifier) from a squeeze-excitation
    ``fc1`` that happens to have as many channels as there are classes.
    """
    if not (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.out_channels == num_logits
    ):
        return False
    return all(c.shape[1] == num_logits for c in rest if _spatial_size(c.shape) > 1)


def block_output(
    calls: list[Call], modules: Mapping[str, nn.Module], num_logits: int | None = None
) -> tuple[str | None, str | None]:
    """The output of the last conv block: Grad-CAM's ``layers="auto"``.

    The last module (in the order calls finish) whose output is 4-D with a
    spatial size above 1x1, at its last call (Captum attributes a shared
    module's last call). A block's activation or pooling module finishes after
    its conv, so it wins over the raw conv; a container that only passes on its
    last child's output gives way to that child; pass-through modules (dropout,
    identity) are skipped, and so is everything from a 1x1 conv with
    ``num_logits`` output channels on (a convolutional logits head).

    Returns:
        ``(name, note)``: ``note`` explains a poor pick (a raw conv or norm whose
        output goes through a functional activation that no module exposes), else ``None``.
    """
    last_call = {call.name: call.index for call in calls}
    pick: Call | None = None
    for k, call in enumerate(calls):
        module = modules[call.name]
        if num_logits and _is_logits_head(module, calls[k:], num_logits):
            break  # a logits head: nothing from here on explains a class
        spatial = _spatial_size(call.shape)
        if spatial <= 1 or call.index != last_call[call.name] or isinstance(module, SKIP_TYPES):
            continue
        container = next(module.children(), None) is not None
        if container and pick is not None and call.first_with_output == pick.first_with_output:
            continue  # the same tensor under a container's name: keep the leaf
        pick = call
    if pick is None:
        return None, None
    module = modules[pick.name]
    if isinstance(module, RAW_TYPES) and not pick.feeds_next and pick is not calls[-1]:
        return pick.name, (
            f"`{pick.name}` ({type(module).__name__}) is the last module with a spatial "
            "output, but a functional op (e.g. `F.relu`) follows it, so the CAM is taken "
            "before the activation and tends to be less on the object. Make the "
            "activation a module (`nn.ReLU`) or name a layer in `layers`."
        )
    return pick.name, None


def find_misclassified(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    output_key: str | int | None = None,
    batch_size: int = 128,
) -> Tensor:
    """Positions (CPU, ascending) of the ``images`` that ``model`` gets wrong.

    Runs in probe mode (eval, no autograd) in batches on the model's device,
    in its parameter dtype; one host transfer at the end.
    """
    device = model_device(model)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else images.dtype
    wrong = []
    with probe_mode(model):
        for start in range(0, len(images), batch_size):
            xb = images[start : start + batch_size].to(device, dtype)
            pred = first_tensor(model(xb), output_key).argmax(1)
            wrong.append(pred != labels[start : start + batch_size].to(device))
    if not wrong:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(wrong).nonzero()[:, 0].cpu()


def concentration(cam: Tensor, top: float = TOP_SHARE) -> Tensor:
    """Per image: share of the CAM's mass in its top ``top`` share of pixels (N,)."""
    flat = cam.flatten(1).clamp_min(0)
    k = max(1, math.ceil(top * flat.shape[1]))
    total = flat.sum(1)
    share = flat.topk(k, dim=1).values.sum(1) / total
    return torch.where(total > 0, share, torch.full_like(share, math.nan))


def components(mask: Tensor) -> Tensor:
    """Connected components (8-neighbourhood) of a boolean mask (N, H, W).

    Every pixel of the mask gets the label of its component (the largest
    ``1 + flat index`` in it); pixels off the mask get 0. Vectorised: labels
    spread by a 3x3 max-pool restricted to the mask until nothing changes (as
    many rounds as the longest path inside a component; one host check every 8).

    Example::

        >>> mask = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]]).bool()
        >>> components(mask).tolist()
        [[[2, 2, 0, 0], [0, 0, 0, 12], [0, 0, 0, 12]]]
    """
    h, w = mask.shape[-2:]
    keep = mask.float()
    ids = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, h, w)
    labels = ids * keep
    for i in range(h * w):
        grown = F.max_pool2d(labels.unsqueeze(1), 3, stride=1, padding=1).squeeze(1) * keep
        if i % 8 == 7 and torch.equal(grown, labels):
            break
        labels = grown
    return labels.long()


def foreground(
    image01: Tensor, threshold: float, min_component: float = 0.25, max_side: int = 64
) -> Tensor:
    """Foreground mask (N, H, W): the object's bright pixels.

    Pixels whose channel-mean brightness is above ``threshold``, in connected
    components (8-neighbourhood) of at least ``min_component`` x the largest
    component's area: the object is the big bright shape; small isolated blobs
    (a watermark, a planted marker, noise specks) are not. ``min_component=0``
    keeps every bright pixel. Images larger than ``max_side`` find their components
    on a grid of ``ceil(side / max_side)``-pixel cells (a cell is bright when any of
    its pixels is), so the cost stays that of a 64x64 image; blobs closer than a
    cell then count as one.

    ``image01`` is the de-normalised input (N, C, H, W), values in [0, 1].

    Example::

        >>> image = torch.zeros(1, 1, 6, 6)
        >>> image[0, 0, 1:5, 2:4] = 1.0  # the object: 8 pixels
        >>> image[0, 0, 0, 5] = 1.0  # an isolated speck
        >>> int(foreground(image, 0.2).sum()), int(foreground(image, 0.2, 0.0).sum())
        (8, 9)
    """
    mask = image01.float().mean(1) > threshold
    if min_component <= 0:
        return mask
    h, w = mask.shape[-2:]
    cell = max(1, math.ceil(max(h, w) / max_side))
    coarse = mask
    if cell > 1:
        coarse = F.max_pool2d(mask.float().unsqueeze(1), cell, ceil_mode=True).squeeze(1) > 0
    labels = components(coarse).flatten(1)
    sizes = torch.zeros(labels.shape[0], labels.shape[1] + 1, device=labels.device)
    sizes.scatter_add_(1, labels, torch.ones_like(labels, dtype=sizes.dtype))
    sizes[:, 0] = 0  # background
    size = sizes.gather(1, labels)  # the area of each cell's component
    big = (size >= min_component * sizes.amax(1, keepdim=True)).view_as(coarse)
    if cell > 1:
        big = big.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w]
    return big & mask


def on_object(cam: Tensor, mask: Tensor) -> Tensor:
    """Per image: share of the CAM's mass inside ``mask`` (N,); ``NaN`` for an all-zero CAM."""
    flat = cam.flatten(1).clamp_min(0)
    total = flat.sum(1)
    share = (flat * mask.flatten(1).to(flat.dtype)).sum(1) / total
    return torch.where(total > 0, share, torch.full_like(share, math.nan))


def drift(cam: Tensor, previous: Tensor) -> Tensor:
    """Per image: ``1 - Pearson correlation`` with ``previous`` (N,); ``NaN`` where one is flat."""
    a = cam.flatten(1).double()
    b = previous.to(cam.device).flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    corr = (a * b).sum(1) / norm
    out = torch.where(norm > 0, 1.0 - corr, torch.full_like(corr, math.nan))
    return out.float()


def cam_metrics(
    cam: Tensor, image01: Tensor, previous: Tensor | None, threshold: float | None
) -> dict[str, Tensor]:
    """Per-image CAM metrics (N,) by name.

    ``concentration``; ``on_object`` unless ``threshold`` is ``None``; ``drift``
    when a ``previous`` CAM of the same shape is given.
    """
    out = {"concentration": concentration(cam)}
    if threshold is not None:
        out["on_object"] = on_object(cam, foreground(image01, threshold))
    if previous is not None and previous.shape == cam.shape:
        out["drift"] = drift(cam, previous.float())
    return out


def fell_off(state: dict[str, Any], value: float, ratio: float = 0.5, margin: float = 0.2) -> bool:
    """Track ``on_object`` over time; ``True`` when it has just fallen markedly.

    Markedly: below ``ratio`` x its first value, or more than ``margin`` below its
    running maximum. ``state`` (``first``, ``max``, ``low``) is updated in place;
    after a fall it reports again only once the value has recovered.

    Example::

        >>> state = {}
        >>> [fell_off(state, v) for v in (0.3, 0.5, 0.28, 0.25, 0.4, 0.1)]
        [False, False, True, False, False, True]
    """
    state["first"] = value if state.get("first") is None else state["first"]
    state["max"] = max(value, state.get("max") or value)
    low = value < ratio * state["first"] or value < state["max"] - margin
    fell, state["low"] = low and not state.get("low", False), low
    return fell


def train_val_gap(
    state: dict[str, Any],
    train: float,
    val: float,
    margin: float = 0.1,
    ratio: float = 0.75,
    patience: int = 2,
) -> bool:
    """Track train vs val ``on_object``; ``True`` when train has stayed markedly below val.

    Train and val images come from the same distribution, so their CAMs should
    sit on the object about equally. Markedly below: ``train < val - margin`` and
    ``train < ratio * val``, at ``patience`` consecutive logs. A CAM that leaves the
    object on training images only points at a cue that only training images
    carry (a shortcut). ``state`` (``gap_run``) is updated in place; reports once
    per run of such logs.

    Example::

        >>> state = {}
        >>> pairs = [(0.3, 0.35), (0.1, 0.3), (0.15, 0.3), (0.12, 0.3), (0.3, 0.3), (0.1, 0.4)]
        >>> [train_val_gap(state, t, v) for t, v in [*pairs, (0.1, 0.4)]]
        [False, False, True, False, False, False, True]
    """
    low = train < val - margin and train < ratio * val
    state["gap_run"] = state.get("gap_run", 0) + 1 if low else 0
    return state["gap_run"] == patience


def on_object_findings(
    state: dict[str, Any], train: float | None, val: float | None = None
) -> list[tuple[str, str, dict[str, float]]]:
    """What the train (and val) ``on_object`` of one log tell: ``[(kind, message, figures)]``.

    ``cam_off_object``: train ``on_object`` fell (``fell_off`` with ``DROP_RATIO``,
    ``DROP_MARGIN``). ``cam_shortcut``: it stayed below val's (``train_val_gap`` with
    ``GAP_MARGIN``, ``GAP_RATIO``, ``GAP_PATIENCE``). ``state`` is updated in place.

    Example::

        >>> state = {}
        >>> [k for t, v in ((0.3, 0.3), (0.12, 0.3), (0.1, 0.3)) for k, *_ in
        ...  on_object_findings(state, t, v)]
        ['cam_off_object', 'cam_shortcut']
    """
    if train is None:
        return []
    found = []
    if fell_off(state, train, DROP_RATIO, DROP_MARGIN):
        first, best = state["first"], state["max"]
        message = (
            f"Grad-CAM moved off the object: {train:.2f} of its mass lies on the object "
            f"(first log {first:.2f}, best {best:.2f}); the model may be learning a shortcut"
        )
        found.append(("cam_off_object", message, {"on_object": train, "first": first, "max": best}))
    if val is not None and train_val_gap(state, train, val, GAP_MARGIN, GAP_RATIO, GAP_PATIENCE):
        message = (
            f"Grad-CAM looks off the object on training images only: {train:.2f} of its mass "
            f"lies on the object there vs {val:.2f} on validation images ({GAP_PATIENCE} logs "
            "in a row); the model relies on a cue that only training images carry (a shortcut)"
        )
        found.append(("cam_shortcut", message, {"on_object": train, "val_on_object": val}))
    return found


def on_object_text(message: str, step: int, epoch: int) -> str:
    """The ``gradcam/diagnosis`` text of an ``on_object_findings`` message: when, what, remedies.

    Example::

        >>> on_object_text("Grad-CAM moved off the object", 50, 1)[:48]
        'Grad-CAM at step 50 (epoch 1): Grad-CAM moved of'
    """
    return (
        f"Grad-CAM at step {step} (epoch {epoch}): {message}.\n\n"
        "Compare `gradcam/train` with `gradcam/val`: what the training CAMs light up off the "
        "object is the cue. Remove it from the training images (or add it to the validation "
        "images to measure how much the model depends on it), augment it away (random crops, "
        "cutout, colour jitter), or balance the data so that it no longer predicts the label."
    )


def blank_cams(cam: Tensor) -> Tensor:
    """Per map of ``(N, H, W)``, whether it is all zero or not finite (drawn blank).

    Example::

        >>> blank_cams(torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]], [[float("nan"), 1.0]]])).tolist()
        [False, True, True]
    """
    flat = cam.flatten(1)
    return (~torch.isfinite(flat).all(1)) | (flat.nan_to_num().amax(1) <= 0)


def cam_grid(
    image01: Tensor,
    cam: Tensor,
    logits: Tensor,
    labels: Tensor | None,
    *,
    cmap: str = "inferno",
    alpha: float = 0.5,
    shared_scale: bool = False,
    min_size: int = 84,
    max_size: int = 160,
) -> tuple[Tensor, int]:
    """Heatmaps over the images, each tile labelled ``true 7 / pred 1 0.83``, in a grid.

    Labels are green where the prediction is right, red where it is wrong. Tiles
    are upscaled (nearest) to at least ``min_size`` and shrunk to at most ``max_size``.

    Returns:
        ``(uint8 (3, H, W) grid, number of all-zero or non-finite CAMs)`` (those show blank).
    """
    from lightning_cnnviz.core import rendering as R

    bad = blank_cams(cam)
    heat = R.normalize(cam, "shared" if shared_scale else "per_image")
    tiles = R.upscale_to(R.overlay(image01, heat, cmap, alpha), min_size)
    if max(tiles.shape[-2:]) > max_size:
        scale = max_size / max(tiles.shape[-2:])
        size = (round(tiles.shape[-2] * scale), round(tiles.shape[-1] * scale))
        tiles = F.interpolate(tiles.float(), size=size, mode="area").round().byte()
    conf, pred = logits.float().softmax(1).max(1)
    host = torch.stack([conf, pred.float(), bad.float()]).cpu().tolist()
    out = []
    for i, tile in enumerate(tiles.cpu()):
        p, c, y = int(host[1][i]), host[0][i], None if labels is None else int(labels[i])
        text = f"pred {p} {c:.2f}" if y is None else f"true {y} / pred {p} {c:.2f}"
        out.append(R.caption(tile, text, (120, 230, 120) if y in (None, p) else (255, 90, 90)))
    return R.grid(out, nrow=min(8, len(out)), padding=2), int(sum(host[2]))


def means_to_host(values: Mapping[str, Tensor]) -> dict[str, float]:
    """Mean of each tensor's finite entries, moved to the host in one transfer.

    Entries with no finite value at all are left out (nothing to plot).

    Example::

        >>> means_to_host({"a": torch.tensor([0.2, float("nan"), 0.4]), "b": torch.tensor([])})
        {'a': 0.30000001192092896}
    """
    if not values:
        return {}
    means = []
    for value in values.values():
        finite = torch.isfinite(value)
        total = torch.where(finite, value, torch.zeros_like(value)).sum()
        means.append(total.float() / finite.sum())  # 0 / 0 = NaN when none is finite
    host = torch.stack(means).tolist()
    return {k: v for k, v in zip(values, host, strict=True) if math.isfinite(v)}
