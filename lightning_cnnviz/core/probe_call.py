"""Whether the model's ``forward`` takes the monitors' probe images, and why not, in words.

A probe pass calls ``forward(images)`` on a batch of the probe's own size. Three ways a
model refuses that are told once, with their fix, instead of as the call's error:

- ``forward`` needs another input besides the images (``forward(x, lengths)``);
- ``forward`` fixes the batch size (``x.view(32, -1)``): it runs on batches of the
  training batch size only;
- ``forward`` takes one argument holding several images (a Siamese ``forward(pair)``
  with ``a, b = pair``), as the data items hold them (``(a, b, same)``).

Example::

    >>> class Fixed(nn.Module):
    ...     def forward(self, x):
    ...         return x.view(4, -1).sum(1)
    >>> why_not(Fixed(), torch.zeros(1, 3), batch_size=4)[:56]
    'the model runs on batches of 4 (the training batch size)'
    >>> why_not(nn.Linear(3, 2), torch.zeros(1, 3), batch_size=4) is None
    True
"""

from __future__ import annotations

import inspect

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lightning_cnnviz.core.capture import first_tensor
from lightning_cnnviz.core.grad_graph import nodes_behind, reaches
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["CUT_CAUSES", "CUT_OFF", "REENTRANT", "call_error", "checkpoints_reentrant",
           "keyword_input", "reaches_input", "why_not", "why_not_one"]  # fmt: skip

OTHER_SIZES = (1, 2, 3)  # batch sizes a probe may have, tried against the training one


def call_error(model: nn.Module, x: Tensor | tuple[Tensor, ...]) -> Exception | None:
    """The error of a probe pass of ``model`` on ``x``, or ``None`` where it runs."""
    try:
        with probe_mode(model):
            model(x)
    except Exception as err:
        return err
    return None


REENTRANT = (
    "the model checkpoints activations with `use_reentrant=True`, whose blocks run without "
    "autograd in the forward pass and whose backward refuses `torch.autograd.grad`, which "
    "this monitor's gradient passes use: checkpoint with `use_reentrant=False` (PyTorch's "
    "recommended mode) for it to work"
)


# Where no gradient reaches the input images, in the words of every monitor that needs one
# (AdversarialMonitor, Grad-CAM's saliency rows, ActivationMaximizationMonitor).
CUT_CAUSES = (
    "(a `torch.no_grad()`, `.detach()` or `torch.inference_mode()` in `forward` between them)"
)
CUT_OFF = f"the model's outputs carry no gradient back to its input images {CUT_CAUSES}"


def reaches_input(model: nn.Module, x: Tensor) -> bool:
    """Whether ``model``'s output on ``x`` carries a gradient back to ``x``.

    A frozen stem run under ``torch.no_grad()`` or ``.detach()`` in ``forward`` cuts it:
    gradients to the layers after the stem (Grad-CAM's) still run, those to the images
    (saliency, attacks, activation maximisation) do not. ``True`` where it cannot be asked
    (inputs that are no floating-point tensor).

    Example::

        >>> class Stem(nn.Linear):
        ...     def forward(self, x):
        ...         with torch.no_grad():
        ...             x = x * 2
        ...         return super().forward(x)
        >>> x = torch.zeros(1, 3)
        >>> reaches_input(Stem(3, 2), x), reaches_input(nn.Linear(3, 2), x)
        (False, True)
    """
    if not x.is_floating_point():
        return True
    with probe_mode(model, grad=True):
        x = x.detach().requires_grad_(True)
        return reaches(first_tensor(model(x)), x)


def checkpoints_reentrant(model: nn.Module, x: Tensor) -> bool:
    """Whether ``model``'s output on ``x`` passes through reentrant activation checkpointing.

    Example::

        >>> from torch.utils.checkpoint import checkpoint
        >>> class Net(nn.Linear):
        ...     def forward(self, x):
        ...         return checkpoint(super().forward, x, use_reentrant=True)
        >>> checkpoints_reentrant(Net(3, 2), torch.zeros(1, 3))
        True
        >>> checkpoints_reentrant(nn.Linear(3, 2), torch.zeros(1, 3))
        False
    """
    try:
        with probe_mode(model, grad=True):
            x = x.detach().requires_grad_(x.is_floating_point())
            scores = first_tensor(model(x))
    except Exception:
        return False
    return any(type(n).__name__ == "CheckpointFunctionBackward" for n in nodes_behind(scores))


def why_not(model: nn.Module, x: Tensor, batch_size: int | None) -> str | None:
    """Why ``model`` cannot take probe batches like ``x`` (one image), or ``None`` if unknown.

    ``batch_size``: the training loader's, where known.
    """
    if type(model).forward in (nn.Module.forward, LightningModule.forward):  # none of its own
        parts = ", ".join(f"`self.{name}`" for name, _ in model.named_children())
        return (
            f"the model (`{type(model).__name__}`) defines no `forward`, and a probe pass "
            "calls `forward(images)`: define `forward(self, x)` to compute the outputs as "
            f"`training_step` does{f' (from {parts})' if parts else ''} for the monitors to "
            "read the model"
        )
    extra = _other_inputs(model)
    if extra:
        names = ", ".join(f"`{n}`" for n in extra)
        return (
            f"the model's `forward` needs {names} besides the images (`forward(x, "
            f"{', '.join(extra)})`), and a probe pass calls `forward(images)`: where the "
            f"outputs can be computed without {'it' if len(extra) == 1 else 'them'}, give "
            f"{'it' if len(extra) == 1 else 'them'} a default (`{extra[0]}=None`) for the "
            "monitors to read the model; a model that compares images (a Siamese pair) "
            "has no output of one image to read"
        )
    sizes = sorted({*OTHER_SIZES, *([batch_size] if batch_size else [])})
    failed = [call_error(model, _repeated(x, n)) for n in sizes]
    if all(failed):  # on every batch size: `forward` takes no images like these
        return _takes_no_images(x, sizes, failed[0])
    if not batch_size or batch_size in OTHER_SIZES:
        return None
    if call_error(model, _repeated(x, batch_size)) is not None:
        return None
    errors = [call_error(model, _repeated(x, n)) for n in OTHER_SIZES]
    if not all(errors):
        return None
    return (
        f"the model runs on batches of {batch_size} (the training batch size) only: on "
        f"{OTHER_SIZES[0]} image it fails ({type(errors[0]).__name__}: {errors[0]}), as when "
        f"`forward` fixes the batch size (`x.view({batch_size}, -1)`), and the probes have "
        "sizes of their own: write `x.flatten(1)` or `x.view(x.size(0), -1)`"
    )


def why_not_one(model: nn.Module, images: list[Tensor]) -> str | None:
    """Why ``model`` takes no one image batch, where it takes the item's images as one tuple.

    ``images``: the data item's images of the probe images' shape, in order, each a batch
    of one as the model takes it. ``None`` unless there are several and
    ``forward(tuple(images))`` runs: the probes show one image at a time, and what a pair
    means to the model (which image is which, a label of the pair) is the model's own, so
    the monitors step aside with this instead of guessing (setups hunt 23).

    Example::

        >>> class Pair(nn.Module):
        ...     def forward(self, pair):
        ...         a, b = pair
        ...         return a - b
        >>> why_not_one(Pair(), [torch.zeros(1, 3), torch.ones(1, 3)])[:69]
        "the model's `forward` takes one argument holding two images (it runs "
        >>> why_not_one(nn.Linear(3, 2), [torch.zeros(1, 3), torch.ones(1, 3)]) is None
        True
    """
    if len(images) < 2 or call_error(model, tuple(images)) is not None:
        return None
    count = _WORDS.get(len(images), str(len(images)))
    names = "abcdefgh"[: len(images)]  # more than eight: the first eight named
    others = ", ".join(f"{n}=None" for n in names[1:])
    unset = f"`{names[1]}` is None" if len(names) == 2 else "the others are None"
    return (
        f"the model's `forward` takes one argument holding {count} images (it runs on "
        f"the data items' {count} images as one tuple, `forward(({', '.join(names)}))`, and "
        "fails on one image batch), and a probe pass calls `forward(images)` on one batch of "
        "images: let `forward` take one batch too for the monitors to read the model, e.g. "
        f"`forward(self, a, {others})` giving the shared branch's output for `a` alone where "
        f"{unset} (the steps then call `self({', '.join(names)})`)"
    )


_WORDS = {2: "two", 3: "three", 4: "four"}


def _other_inputs(model: nn.Module) -> list[str]:
    """The inputs ``forward`` requires besides the first (none where it takes ``*args``)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin or scripted forward: not known
        return []
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return []
    required = [p.name for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
    return required[1:]


def keyword_input(model: nn.Module) -> str | None:
    """The keyword ``forward`` takes its images as, where it takes no positional input.

    ``forward(self, *, pixel_values)`` (held out, setups hunt 21: every probe pass raised
    "forward() takes 1 positional argument but 2 were given"): its one required
    keyword-only parameter, else its only keyword-only one; ``None`` elsewhere.

    Example::

        >>> class Net(nn.Module):
        ...     def forward(self, *, pixel_values, mask=None):
        ...         return pixel_values
        >>> keyword_input(Net()), keyword_input(nn.Linear(2, 2))
        ('pixel_values', None)
    """
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    ):
        return None
    keywords = [p for p in params if p.kind is p.KEYWORD_ONLY]
    required = [p for p in keywords if p.default is p.empty]
    found = required if required else keywords
    return found[0].name if len(found) == 1 else None


def _takes_no_images(x: Tensor, sizes: list[int], err: Exception) -> str:
    """The reason for a ``forward`` that fails on the val images at each batch size tried."""
    shape = "x".join(str(n) for n in x.shape[1:])
    tried = ", ".join(str(n) for n in sizes[:-1]) + f" and {sizes[-1]}"
    return (
        f"the model's `forward` fails on the val images ({shape}, in batches of {tried}: "
        f"{type(err).__name__}: {err}), and the monitors pass images through `forward`; "
        "where it takes something else (a GAN generator's noise, token ids, features), "
        "these monitors cannot read the model"
    )


def _repeated(x: Tensor, n: int) -> Tensor:
    """``x``'s first image ``n`` times."""
    return torch.cat([x[:1]] * n)
