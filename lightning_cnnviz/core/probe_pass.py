"""The probe-pass context: a model read for a monitor, leaving training as it was.

``probe_mode`` puts a model in eval mode for a probe pass and restores each module's own
``training`` flag afterwards, forks the random state, keeps every buffer
(``model_state.kept_state``), runs eagerly and without autocast, hands a model whose
``forward`` takes the data item ``{key: images}``, its images channels last or as a keyword
(``takes_items``), hands a module the images scaled and shifted as the training step
does (``follow_step``), and silences a LightningModule's ``self.log``; ``in_probe_pass``
tells a tap on the run's own passes that one runs.

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2))
    >>> with probe_mode(net):
    ...     net.training, in_probe_pass()
    (False, True)
    >>> net.training, in_probe_pass()
    (True, False)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.generators import global_rng_kept
from lightning_cnnviz.core.inputs import model_device
from lightning_cnnviz.core.model_state import backward_hooks_aside, kept_state
from lightning_cnnviz.core.module_paths import registered
from lightning_cnnviz.core.own_hooks import own_hook
from lightning_cnnviz.core.stored_form import stored_batch

__all__ = [
    "Batch",
    "Keyword",
    "Stored",
    "follow_step",
    "follows_step",
    "in_probe_pass",
    "probe_mode",
    "takes_items",
]


_probe_passes = 0  # probe passes running now (nested ones count each)
# models whose `forward` takes the data item (a dict) rather than the images: the key the
# images go under in a probe pass, or how they are stored (found per fit: ``takes_items``)
_ITEM_FORWARD: weakref.WeakKeyDictionary[nn.Module, str | Keyword | Stored | Batch] = (
    weakref.WeakKeyDictionary()
)
# models whose training step scales and shifts the images before a module, outside what a
# probe pass runs: that module's name (not the module: a value holding its key, the model,
# would keep it alive) and the per-channel scale and offset (``follow_step``)
_STEP_FIX: weakref.WeakKeyDictionary[nn.Module, tuple[str, Tensor, Tensor]] = (
    weakref.WeakKeyDictionary()
)


@dataclasses.dataclass(frozen=True)
class Stored:
    """A ``forward`` that takes its images as the dataset stores them (``stored_form.seen_view``).

    ``form``: ``stored_form.CHANNELS_LAST`` or ``stored_form.NO_CHANNEL``; the probes hold them as
    the convolutions see them.
    """

    form: str


@dataclasses.dataclass(frozen=True)
class Batch:
    """A ``forward`` that unpacks the loader's ``[images, labels]`` batch itself.

    ``fill``: the placeholder labels' value (the outputs were checked not to depend on
    them, ``input_form.py``).
    """

    fill: int = 0


@dataclasses.dataclass(frozen=True)
class Keyword:
    """A ``forward`` that takes its images as the keyword ``name`` only (``forward(*, x)``)."""

    name: str


def takes_items(model: nn.Module, key: str | Keyword | Stored | Batch | None) -> None:
    """Call ``model`` in probe passes with ``{key: images}`` (``None``: with the images).

    ``Stored(form)``: with the images as its data holds them (channels last, or without a
    channel axis; the probes hold them as its convolutions see them: ``stored_form.py``);
    ``Keyword(name)``: as ``forward(name=images)``; ``Batch()``: as ``forward([images,
    labels])``.
    """
    if key is None:
        _ITEM_FORWARD.pop(model, None)
    else:
        _ITEM_FORWARD[model] = key


def follow_step(model: nn.Module, fix: tuple[str, Tensor, Tensor] | None) -> None:
    """Scale and shift each channel of what a module receives in ``model``'s probe passes.

    ``fix``: ``(name, scale, offset)``, the module's name in ``model`` ("": the model),
    found by ``core.step_transform`` from what the run's training step hands it; ``None``:
    hand it what ``forward`` gives.
    """
    if fix is None:
        _STEP_FIX.pop(model, None)
    else:
        _STEP_FIX[model] = fix


def follows_step(model: nn.Module) -> bool:
    """Whether ``model``'s probe passes scale and shift as its training step does."""
    return model in _STEP_FIX


def _as_step(scale: Tensor, offset: Tensor, module: nn.Module, args: tuple[Any, ...]) -> Any:
    """The first input scaled and shifted per channel as the training step does."""
    if args and isinstance(x := args[0], Tensor) and x.dim() >= 2 and x.shape[1] == len(scale):
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return (x * scale.to(x).view(shape) + offset.to(x).view(shape), *args[1:])
    return None


def _as_item(
    key: str | Stored | Batch, module: nn.Module, args: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    """A probe pass's images handed to ``forward`` as stored, or as the item it takes.

    The item: ``{key: images}``, or a batch ``[images, labels]`` with placeholder labels
    (``Batch``).
    """
    if args and isinstance(args[0], Tensor):
        if isinstance(key, Batch):
            images = args[0]
            labels = torch.full((len(images),), key.fill, dtype=torch.long, device=images.device)
            return ([images, labels], *args[1:])
        x = stored_batch(args[0], key.form) if isinstance(key, Stored) else {key: args[0]}
        return (x, *args[1:])
    return None


def _fresh_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Copies of a probe pass's tensors, for a ``forward`` that changes its input in place.

    ``x.sub_(mean).div_(std)`` (``normalize(..., inplace=True)``) would otherwise rewrite
    the monitors' kept probe images at every pass (setups hunt 29: two passes "apart", the
    images normalised again and again), or a dataset's own tensor; on a leaf that needs
    its gradient (Grad-CAM's input) it raises. A copy keeps the graph to the original.
    """
    if not any(isinstance(a, Tensor) for a in args):
        return None
    return tuple(a.clone() if isinstance(a, Tensor) else a for a in args)


def _as_keyword(
    name: str, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """A probe pass's images handed to ``forward`` as the keyword ``name``."""
    if args and isinstance(args[0], Tensor) and name not in kwargs:
        return args[1:], {**kwargs, name: args[0]}
    return None


def in_probe_pass() -> bool:
    """Whether a monitor's probe pass is running (public: ``lightning_cnnviz.in_probe_pass``).

    The monitors call the model's ``forward`` on their probe images; a forward hook of your
    own (a feature collector, a memory bank) sees those calls too unless it skips them:

        >>> feats = []
        >>> def collect(module, args, output):
        ...     if not in_probe_pass():  # the run's own passes only
        ...         feats.append(output.detach())

    The monitors' own taps on the run's passes skip them the same way.

    Example::

        >>> net = nn.Linear(2, 2)
        >>> with probe_mode(net):
        ...     in_probe_pass()
        True
        >>> in_probe_pass()
        False
    """
    return _probe_passes > 0


@contextlib.contextmanager
def _silent_logging(model: nn.Module) -> Iterator[None]:
    """A LightningModule's ``log``/``log_dict`` as no-ops: a probe pass's ``forward`` logs nothing.

    A ``forward`` that calls ``self.log`` would log the probe's figures as the run's, or
    fail where Lightning refuses a log (in ``setup``, where the monitors trace the model).
    """
    names = [
        n
        for n in ("log", "log_dict")
        if callable(getattr(type(model), n, None)) and n not in vars(model)
    ]
    if not hasattr(type(model), "trainer") or not names:  # not a LightningModule
        yield
        return
    for name in names:
        object.__setattr__(model, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for name in names:
            object.__delattr__(model, name)


@contextlib.contextmanager
def probe_mode(
    model: nn.Module, *, grad: bool = False, autocast: bool = False
) -> Iterator[nn.Module]:
    """Eval mode for a probe pass, restoring every module's own ``training`` flag afterwards.

    Works inside Lightning's ``torch.inference_mode()`` (validation) because it
    leaves inference mode; ``grad=True`` enables autograd (for Grad-CAM, which
    differentiates w.r.t. activations only). ``autocast=False`` (default) turns
    autocast off so that probe numerics are float32 under mixed precision. The global
    generators (torch's, Python's, NumPy's) are kept: a pass that draws random numbers
    leaves the run's streams as they were; so are the buffers (``model_state.kept_state``:
    observers of quantization-aware training update theirs in eval mode too).

    Example::

        >>> net = nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2))
        >>> _ = net[1].train(False)  # a frozen BatchNorm inside a training model
        >>> with probe_mode(net):
        ...     net.training
        False
        >>> net.training, net[0].training, net[1].training
        (True, True, False)
    """
    global _probe_passes
    flags = [(module, module.training) for module in model.modules()]
    device = model_device(model)
    device_type = device.type
    try:
        with contextlib.ExitStack() as stack:
            # a model random in eval mode (`F.dropout(x, p)`, `np.random` in forward) draws
            # numbers in a probe pass: the run's own streams stay as they were
            stack.enter_context(global_rng_kept([device] if device_type == "cuda" else []))
            stack.enter_context(kept_state(model))
            handle = model.register_forward_pre_hook(
                own_hook(_fresh_inputs)
            )  # first: before the item's
            stack.callback(handle.remove)
            if isinstance(key := _ITEM_FORWARD.get(model), Keyword):
                hook = functools.partial(_as_keyword, key.name)
                handle = model.register_forward_pre_hook(own_hook(hook), with_kwargs=True)
                stack.callback(handle.remove)
            elif key is not None:
                handle = model.register_forward_pre_hook(own_hook(functools.partial(_as_item, key)))
                stack.callback(handle.remove)
            fix = _STEP_FIX.get(model)
            if fix is not None and (at := registered(model, fix[0])) is not None:
                handle = at.register_forward_pre_hook(
                    own_hook(functools.partial(_as_step, *fix[1:]))
                )
                stack.callback(handle.remove)
            stack.enter_context(_silent_logging(model))
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.set_grad_enabled(grad))
            if grad:  # the run's backward hooks never see a probe's gradients
                stack.enter_context(backward_hooks_aside(model))
            # A compiled graph may have been traced with other (or no) hooks: run probes eagerly.
            if hasattr(torch.compiler, "set_stance"):
                stack.enter_context(torch.compiler.set_stance("force_eager"))
            if not autocast and device_type in ("cpu", "cuda", "xpu", "mps"):
                stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
            model.eval()
            _probe_passes += 1
            try:
                yield model
            finally:
                _probe_passes -= 1
    finally:
        for module, flag in flags:
            module.training = flag
