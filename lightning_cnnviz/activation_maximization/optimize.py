"""Feature visualisation by activation maximisation: what input makes a channel (or a class) fire.

Nothing here knows about Lightning. ``maximize`` starts from seeded noise and
runs ``steps`` of gradient ascent (``torch.optim.Adam`` on the input only) on the
mean activation of each target channel (or on a class logit), with random
jitter (the image is rolled by a few pixels before every step, shifts drawn
from a generator of its own), total-variation and L2 penalties, and optional
clamping to the valid pixel range. The model runs in probe mode (eval, flags
restored, autocast off) and the gradient is ``torch.autograd.grad`` w.r.t. the
input batch only, so no ``param.grad`` is written and ``requires_grad`` flags
stay as they are. One batch holds every target; each image only feeds its own
objective (eval mode: no batch statistics), so the targets do not interact.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
    ...                     nn.Linear(3 * 8 * 8, 2))
    >>> targets = [Target("0", 2), Target(None, 1)]
    >>> images, scores = maximize(net, {"0": net[0]}, targets, (1, 8, 8), steps=4)
    >>> tuple(images.shape), tuple(scores.shape), net[0].weight.grad is None
    ((2, 1, 8, 8), (2,), True)
    >>> float(total_variation(torch.ones(1, 1, 4, 4)))
    0.0
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.capture import LayerCapture, module_name
from lightning_cnnviz.core.grad_graph import reaches
from lightning_cnnviz.core.guard import grads_untouched
from lightning_cnnviz.core.inputs import model_device, to_model
from lightning_cnnviz.core.outputs import logits_from
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["Target", "maximize", "top_channels", "total_variation"]


@dataclass(frozen=True)
class Target:
    """One objective: a channel of call site ``site``, or a class logit (``site`` is ``None``)."""

    site: str | None
    channel: int


def total_variation(x: Tensor) -> Tensor:
    """Per image: mean absolute difference of neighbouring pixels, rows plus columns ``(N,)``."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dy + dx


def top_channels(activation: Tensor, k: int) -> Tensor:
    """The ``k`` channels (dim 1) with the highest mean activation over everything else."""
    means = activation.float().transpose(0, 1).flatten(1).mean(1)
    return means.topk(min(k, means.numel())).indices


def maximize(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    targets: list[Target],
    shape: tuple[int, ...],
    *,
    steps: int = 64,
    lr: float = 0.1,
    jitter: int = 2,
    tv_weight: float = 0.1,
    l2_weight: float = 0.01,
    seed: int = 0,
    shared: Collection[str] = (),
    bounds: tuple[Tensor, Tensor] | None = None,
    output_key: Any = None,
    unreached: set[str] | None = None,
    cut: set[str | None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Optimise one input per target by regularised gradient ascent.

    Args:
        model: the (unwrapped) model; its flags are restored, its parameters untouched.
        layers: ``{name: module}`` holding every site a target names.
        targets: what each image of the batch maximises.
        shape: one input's shape without the batch dim, e.g. ``(1, 28, 28)``.
        steps: optimisation steps (``0``: the start noise comes back).
        lr: Adam's learning rate, in input units.
        jitter: largest random shift (pixels) in either direction before each step.
        tv_weight: weight of the total-variation penalty (smooth images).
        l2_weight: weight of the mean squared input (no runaway pixels).
        seed: seeds the start noise and the shifts (same seed, same sequence).
        shared: names of modules called more than once (sites ``name#k``).
        bounds: per-channel ``(low, high)`` tensors broadcastable to the input, e.g.
            the normalised images of pixel values 0 and 1 (``core.inputs.input_bounds``).
        output_key: picks the logits from a tuple/dict model output.
        unreached: filled with the sites some pass did not reach: a module called a number
            of times its input decides (adaptive computation), which the optimised images
            change. Their targets score 0 in those passes (only the penalties move them).
        cut: filled with the sites (``None``: the logits) whose score carries no gradient
            back to the input (a stem under ``torch.no_grad()`` or ``.detach()`` in
            ``forward``), asked at the first step: only the penalties move their images.
            Where every target's is cut, the optimisation stops there.

    Returns:
        ``(images, scores)``: the optimised inputs (float32, detached, on the model's
        device) and each target's objective at the last step (float32, ``(B,)``).
    """
    generator = torch.Generator().manual_seed(seed)
    start = 0.1 * torch.randn((len(targets), *shape), generator=generator)
    shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=generator).tolist()
    device = model_device(model)
    x = to_model(start, model, torch.float32).requires_grad_(True)
    if bounds is not None:  # input_bounds gives them on the CPU
        bounds = (bounds[0].to(device), bounds[1].to(device))
    rows: dict[str | None, tuple[Tensor, Tensor]] = {}
    for site in dict.fromkeys(t.site for t in targets):
        index = [i for i, t in enumerate(targets) if t.site == site]
        channels = [targets[i].channel for i in index]
        rows[site] = (torch.tensor(index, device=device), torch.tensor(channels, device=device))
    picked: dict[str | None, Tensor] = {}

    def on_output(site: str, out: Tensor) -> None:
        # copied at once (in-place ops come later) and read after the pass: a copy saves
        # no tensor for backward, so a block recomputed there (activation checkpointing)
        # saves what the forward saved
        if site in rows:
            picked[site] = out.clone()

    sites = {module_name(s, layers) for s in rows if s}
    hooked = {n: m for n, m in layers.items() if n in sites}
    optimizer = torch.optim.Adam([x], lr=lr)
    score = torch.zeros(len(targets), device=device, dtype=torch.float32)
    with grads_untouched(model), probe_mode(model, grad=True):
        for step, (dy, dx) in enumerate(shifts):
            picked.clear()
            # A fresh capture per forward: a capture numbers the calls of a shared
            # module across its whole life, so a second forward would name `b#2`, not `b#0`.
            with LayerCapture(hooked, shared=shared, on_output=on_output):
                out = model(torch.roll(x, (dy, dx), dims=(-2, -1)))
            logits = logits_from(out, output_key)
            for site, kept in picked.items():
                index, channels = rows[site]
                picked[site] = kept[index, channels].reshape(len(index), -1).float().mean(1)
            if None in rows:
                index, classes = rows[None]
                picked[None] = logits[index, classes].float()
            score = torch.zeros(len(targets), device=device, dtype=torch.float32)
            for site, (index, _) in rows.items():
                if site not in picked:  # setups hunt 74: a bare KeyError stopped the monitor
                    if unreached is not None:
                        unreached.add(site)  # type: ignore[arg-type]  # None: the logits
                    continue
                score = score.index_put((index,), picked[site])
            if step == 0 and cut is not None:
                # setups hunt 75: a score cut off from the images would leave their
                # "maximised" image to the penalties alone, written as if it were one
                cut.update(site for site, part in picked.items() if not reaches(part, x))
                if picked and set(picked) <= cut:
                    break
            penalty = tv_weight * total_variation(x) + l2_weight * x.pow(2).flatten(1).mean(1)
            (grad,) = torch.autograd.grad((penalty.float() - score).sum(), [x])
            x.grad = grad
            optimizer.step()
            if bounds is not None:
                with torch.no_grad():
                    x.copy_(torch.maximum(torch.minimum(x, bounds[1]), bounds[0]))
    return x.detach().float(), score.detach()
