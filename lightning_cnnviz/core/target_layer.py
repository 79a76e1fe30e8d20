"""The layer Grad-CAM looks at by default: the output of the last conv block.

Nothing here knows about Lightning. ``auto_cam_layer`` is Grad-CAM's
``layers="auto"`` wherever a monitor shows a CAM: one shape-tracing probe pass
(``trace_calls``) records every call of every module in the order the calls
finish, and ``block_output`` picks the last one with a 4-D output whose spatial
size is above 1x1. A block's activation or pooling module finishes after its
conv, so it wins over the raw conv: on the reference CNN, Grad-CAM on the raw
``conv2`` output puts less of its mass on the digit than on the rectified,
pooled output of the same block. A 1x1 conv logits head is never picked.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from lightning_cnnviz.core.selection import named_layers
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ...                     nn.Dropout(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    >>> auto_cam_layer(net, named_layers(net), torch.randn(1, 1, 8, 8))
    ('2', None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.capture import LayerCapture, module_name, site_name
from lightning_cnnviz.core.map_places import has_places
from lightning_cnnviz.core.outputs import logits_from
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.tokens import block_norm, grid_layout, prefix_tokens, transformer_blocks
from lightning_cnnviz.core.trace_images import trace_images
from lightning_cnnviz.core.voice import listed

__all__ = [
    "RAW_TYPES",
    "SKIP_TYPES",
    "Call",
    "auto_cam_layer",
    "block_output",
    "trace_calls",
    "transformer_cam_layer",
]

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


@dataclass(frozen=True)
class Call:
    """One call of a module during the shape-tracing probe pass (``trace_calls``).

    Attributes:
        name: the module's name; ``index``: which call of it (0, 1, ... for a shared module).
        shape: its output shape.
        first_with_output: position (in the list of calls) of the first call that
            returned this very tensor object (a ``Sequential`` returns its last
            child's output, an in-place ReLU its input).
        feeds_next: its output is exactly the input of the next module to make another
            tensor (``False`` when a functional op such as ``F.relu`` came in between;
            ``True`` when none follows: containers handing it on do not count).
        single: the module returned this one tensor (not a list of maps or a tuple,
            which Grad-CAM cannot attribute to one map).
        reaches: the model's scores depend on its output through autograd (``False``: a
            map made and left unused, as an FPN's finer levels beside a head that reads
            the coarsest).
    """

    name: str
    index: int
    shape: tuple[int, ...]
    first_with_output: int
    feeds_next: bool
    single: bool = True
    reaches: bool = True


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
        name = module_name(site, layers)
        seen[name] = seen.get(name, -1) + 1
        raw.append((name, seen[name], out, out.detach().clone()))

    capture = LayerCapture(layers, shared=set(layers), inputs=True, on_output=record)
    if x.is_floating_point():  # a graph from the input: frozen layers reach the scores too
        x = x.detach().requires_grad_(True)
    with probe_mode(model, grad=True), capture:
        output = model(x)
        reached = _reaching([out for _, _, out, _ in raw], output, output_key, x.requires_grad)
    calls = []
    first: dict[int, int] = {}
    for k, (name, index, out, kept) in enumerate(raw):
        j = k + 1
        while j < len(raw) and raw[j][2] is out:  # containers handing the same tensor on
            j += 1
        feeds = True  # the model's last map
        if j < len(raw):  # every layer counts as shared: sites are `name#index`
            nxt = capture.inputs.get(site_name(raw[j][0], raw[j][1], layers))
            feeds = nxt is not None and nxt.shape == out.shape and torch.equal(nxt, kept)
        first_k = first.setdefault(id(out), k)
        single = site_name(name, index, layers) not in capture.not_single
        calls.append(Call(name, index, tuple(out.shape), first_k, feeds, single, reached[k]))
    try:
        shape = tuple(logits_from(output, output_key, raw=True).shape)
    except (TypeError, KeyError, IndexError):
        shape = ()
    return calls, shape


def _reaching(
    outs: list[Tensor], output: Any, output_key: str | int | None, from_input: bool = False
) -> list[bool]:
    """Whether the model's scores depend on each of ``outs`` (all ``True`` where unknown).

    ``from_input``: the pass's input needed its gradient, so every map on the way to the
    scores did too; one that does not was made under ``torch.no_grad()`` or detached
    (setups hunt 33: a backbone run under `no_grad` stepped Grad-CAM aside on torch's error).
    """
    known = [i for i, out in enumerate(outs) if out.requires_grad]
    try:
        scores = logits_from(output, output_key, raw=True)
        if not scores.requires_grad:
            return [True] * len(outs)
        if not known:
            return [not from_input] * len(outs)
        grads = torch.autograd.grad(scores.float().sum(), [outs[i] for i in known],
                                    allow_unused=True)  # fmt: skip
    except (RuntimeError, TypeError, KeyError, IndexError):
        return [True] * len(outs)
    reached = [not from_input] * len(outs)
    for i, grad in zip(known, grads, strict=True):
        reached[i] = grad is not None
    return reached


def _is_logits_head(module: nn.Module, rest: list[Call], num_logits: int) -> bool:
    """A 1x1 conv to ``num_logits`` channels after which no spatial map has other channels.

    The second half tells a head (SqueezeNet's classifier) from a squeeze-excitation
    ``fc1`` that happens to have as many channels as there are classes.
    """
    if not (
        isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d)
        and set(module.kernel_size) == {1}
        and module.out_channels == num_logits
    ):
        return False
    return all(c.shape[1] == num_logits for c in rest if has_places(c.shape))


def block_output(
    calls: list[Call],
    modules: Mapping[str, nn.Module],
    num_logits: int | None = None,
    ndim: int = 4,
) -> tuple[str | None, str | None]:
    """The output of the last conv block, among traced ``calls``.

    The last module (in the order calls finish) whose output has the input's ``ndim``
    (3 for signals, 4 for images, 5 for volumes) with a spatial size above 1, at its
    last call (Captum attributes a shared module's last call). A block's activation or
    pooling module finishes after its conv, so it wins over the raw conv; a container
    that only passes on its last child's output gives way to that child; pass-through
    modules (dropout, identity) are skipped, and so is everything from a 1x1 conv with
    ``num_logits`` output channels on (a convolutional logits head).

    Returns:
        ``(name, note)``: ``note`` explains a poor pick (a raw conv or norm whose
        output goes through a functional activation that no module exposes), else ``None``.
    """
    last_call = {call.name: call.index for call in calls}
    pick: Call | None = None
    unread: list[str] = []
    some_reach = any(call.reaches for call in calls)  # none: as traced (said at the event)
    for k, call in enumerate(calls):
        module = modules[call.name]
        if num_logits and _is_logits_head(module, calls[k:], num_logits):
            break  # a logits head: nothing from here on explains a class
        flat = len(call.shape) != ndim or not has_places(call.shape)  # no place for a CAM
        if flat or call.index != last_call[call.name] or isinstance(module, SKIP_TYPES):
            continue
        if not call.single:  # a list of maps (timm's `features_only`): one of its makers
            continue
        if some_reach and not call.reaches:  # a map the scores do not read (an FPN's fine level)
            unread.append(call.name)
            continue
        container = next(module.children(), None) is not None
        if container and pick is not None and call.first_with_output == pick.first_with_output:
            continue  # the same tensor under a container's name: keep the leaf
        pick = call
    if pick is None and unread:  # held out (setups hunt 31): logits of detached features
        return None, (
            f"the model's maps ({listed(unread[-2:])}) do not reach the scores Grad-CAM "
            "differentiates through autograd: they are cut off before them (a `.detach()`, "
            "`torch.no_grad()` or a non-differentiable step in `forward`, as an online "
            "linear probe on detached features has), so no CAM can be taken of them; pick "
            "an output that depends on them with `output_key=`"
        )
    if pick is None:
        return None, None
    module = modules[pick.name]
    if isinstance(module, RAW_TYPES) and not pick.feeds_next:
        return pick.name, (
            f"`{pick.name}` ({type(module).__name__}) is the last module with a spatial "
            "output, but an op that is no module (e.g. `F.relu`, `.abs()`) follows it, so "
            "the CAM is taken before that op and tends to be less on the object. Make the "
            "activation a module (`nn.ReLU`) or name a layer in `layers`."
        )
    return pick.name, None


def auto_cam_layer(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    output_key: str | int | None = None,
) -> tuple[str | None, str | None]:
    """Grad-CAM's ``layers="auto"``: the last conv block's output among ``layers``.

    A vision transformer's layer (token grids on an image's patch grid) is
    ``transformer_cam_layer``'s pick instead. Traces one probe pass on the first image
    (two where one cannot pass: ``trace_images``; in the model's dtype, on its device);
    the model output gives the number of logits (its dim 1: (N, K) or a segmentation
    net's (N, K, H, W)), so that a 1x1 conv logits head is skipped.

    Returns:
        ``(name, note)`` as ``block_output``: ``name`` is ``None`` when no module
        has a spatial output; ``note`` explains a poor pick.
    """
    calls, shape = trace_calls(model, layers, x[: trace_images(model)], output_key)
    if x.dim() == 4:  # token grids lie on an image's patch grid
        name = transformer_cam_layer(calls, layers, tuple(x.shape[2:]), prefix_tokens(model))
        if name is not None:
            return name, None
    return block_output(calls, layers, shape[1] if len(shape) >= 2 else None, x.dim())


# --------------------------------------------------------------- transformers (token grids)
def transformer_cam_layer(
    calls: list[Call],
    modules: Mapping[str, nn.Module],
    image_hw: tuple[int, ...],
    prefix: int | None = None,
) -> str | None:
    """The first norm (``norm1``, ``ln_1``) of the last transformer block, if there is one.

    The usual Grad-CAM layer of a vision transformer: after the last block only the
    class token reaches the head, so the patch tokens of the final norm get no
    gradient; inside the last block they still reach it through attention. The
    block is the last one (by when its call finished) whose norm output lies on a
    patch grid above 1x1 (``core.tokens.grid_layout``: MobileViT's unfolded
    patches are not a grid, so such a model keeps the conv rule).
    """
    finished = {call.name: call for call in calls}  # the last call of each module
    order = sorted(transformer_blocks(modules), key=lambda n: calls.index(finished[n])
                   if n in finished else -1)  # fmt: skip
    for block in reversed(order):
        norm = f"{block}.{block_norm(modules[block])}"
        call = finished.get(norm)
        if call is None:
            continue
        hw = (int(image_hw[0]), int(image_hw[1]))
        layout = grid_layout(call.shape, hw, prefix, modules[norm], batch=1)
        if layout is not None and layout.hw[0] * layout.hw[1] > 1:
            return norm
    return None
