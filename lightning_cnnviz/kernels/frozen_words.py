"""What the frozen-layer findings say: each reason in words, the texts of the two findings.

Nothing here knows about Lightning; the rules that pick the reasons are in ``frozen.py``.

Example::

    >>> frozen_text(["conv1"], {"conv1": "no_grad"}, 2, 20, 60, 1)[:58]
    'Frozen layers at step 60 (epoch 1): 1 of 2 watched layers '
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lightning_cnnviz.core.voice import listed

__all__ = ["ALL_OF_THEM", "REASONS", "frozen_text", "moving_text", "unoptimised_text"]

# Why a layer's weights do not change (``still_reason``), as the finding says it; those in
# ``SET_UP`` keep them as they are, which a random init makes a problem
REASONS = {
    "no_grad": "`requires_grad=False`",
    "not_optimised": "left out of the optimiser's parameter groups",
    "lr_zero": "a learning rate of 0",
    "lr_tiny": "a learning rate 1,000x or more below the optimiser's largest",
    "lr_cut": "a learning rate a schedule cut 1,000x or more below the one set",
    "no_gradient": (
        "no gradient reaches them (it vanishes on the way down, as through saturated "
        "sigmoids; or the units after them are silent, as dead ReLUs are; or the loss is "
        "computed from something detached from them)"
    ),
    "own_gradient_removed": (
        "a gradient of exactly 0 on their own weights, whose gradients pass through a hook "
        "(`register_hook`, or a backward hook on the module): where it returns zeros (or "
        "`g * 0`), the hook removes the gradient there"
    ),
    "no_update": (
        "no update (left out of the optimiser's parameter groups, a learning rate of 0, or "
        "no gradient reaching them)"
    ),
    "detached": (
        "no gradient at all (`.grad` stays None after the backward: their output does not "
        "reach the loss through autograd, cut off by a `.detach()`, `torch.no_grad()` or a "
        "non-differentiable step in `forward`, run inside `checkpoint(..., use_reentrant=True)` "
        "whose inputs need no gradient, or left unused)"
    ),
    "nothing_learns": (
        "no parameter of the model holds a gradient after the backward (every `.grad` is "
        "None or 0), so no step changes anything: the loss `training_step` returns is cut "
        "from the model (`torch.tensor(loss.item())`, a `.detach()`), or, under manual "
        "optimisation, `zero_grad()` runs between `manual_backward` and `step`, or `step` "
        "before `manual_backward` (the order is `zero_grad`, `manual_backward`, `step`)"
    ),
    "nonfinite_gradient": (
        "their gradients are not finite (NaN or inf) after the backward, and a step that "
        'meets such gradients is skipped (the loss scaler of `precision="16-mixed"` skips '
        "each step whose gradients overflow float16) or leaves the weights as they were"
    ),
    "gradient_blocked": (
        "a gradient of exactly 0 after every backward, while the layers after them learn: "
        "an operation between them and the loss passes no gradient (`torch.round`, "
        "`torch.sign`, `argmax`, a comparison, a quantiser without a straight-through "
        "estimator: use `x + (q - x).detach()` to pass it through), so only the layers "
        "after it train"
    ),
    "zeroed_after_backward": (
        "a gradient after the backward, and 0 after the step: something between them sets it "
        "to 0 (a callback's `on_before_optimizer_step`, an `optimizer_step` override, a "
        "mask applied to the gradients), so the layers it zeroes do not train"
    ),
    "zero_gradient": (
        "every gradient is exactly 0 after the backward (the `.grad` tensors are there, all "
        "zeros), so no step changes anything: the loss does not change with the weights, a "
        "constant (cross-entropy over a single class or logit is always 0; a loss multiplied "
        "by 0; targets that are the outputs, detached)"
    ),
    "loss_at_zero": (
        "every gradient is exactly 0 and so is the loss `training_step` returns (it was above "
        "0 at the first step): a margin or hinge loss (triplet, contrastive, SVM) that every "
        "sample meets has nothing left to teach, or the loss is multiplied by 0 (a mask or "
        "a weight of 0) from some step on"
    ),
    "hooks_zeroed": (
        "every gradient is exactly 0 after the backward, and gradients pass through a hook "
        "(`register_hook` on a parameter or tensor, a module's backward hook): a hook that "
        "returns zeros (`g * 0`, from some step on) removes them all; else the loss does "
        "not change with the weights (a loss multiplied by 0, a constant)"
    ),
}
ALL_OF_THEM = {  # the same reason for every layer named, as a clause
    "no_grad": "their weights have `requires_grad=False`",
    "not_optimised": "they are left out of the optimiser's parameter groups",
    "lr_zero": "their learning rate is 0",
    "lr_tiny": "their learning rate is 1,000x or more below the optimiser's largest",
    "lr_cut": "a schedule has cut their learning rate 1,000x or more below the one set",
    "no_update": f"they get {REASONS['no_update']}",
    "detached": f"they get {REASONS['detached']}",
    "nothing_learns": f"{REASONS['nothing_learns']}",
    "zero_gradient": f"{REASONS['zero_gradient']}",
    "loss_at_zero": f"{REASONS['loss_at_zero']}",
    "hooks_zeroed": f"{REASONS['hooks_zeroed']}",
    "gradient_blocked": f"they get {REASONS['gradient_blocked']}",
    "zeroed_after_backward": f"they get {REASONS['zeroed_after_backward']}",
    "nonfinite_gradient": f"{REASONS['nonfinite_gradient']}",
}


def unoptimised_text(names: Sequence[str], step: int, epoch: int) -> str:
    """The ``not_optimised`` note: which parameters, and what either intent needs.

    Example::

        >>> unoptimised_text(["head.weight", "head.bias"], 60, 0)[:70]
        'Parameters no optimiser holds at step 60 (epoch 0): `head.weight`, `he'
    """
    shown = listed(names, 6)
    return (
        f"Parameters no optimiser holds at step {step} (epoch {epoch}): {shown}. A backward "
        "reaches them (they require grad and get a gradient), but no parameter group of "
        "`configure_optimizers` holds them, so they never change: a layer left at its "
        "initialisation (held out: a classifier head left out cost 20-26 points of val "
        "accuracy). A note: if they are meant to stay fixed, set `requires_grad=False` to "
        "skip their gradient; if not, pass them to the optimiser (`self.parameters()`)."
    )


def held_text(names: Sequence[str], told: int, step: int, epoch: int) -> str:
    """The ``not_optimised`` note once an optimiser holds its parameters, in words.

    Example::

        >>> held_text(["fc.weight", "fc.bias"], 2, 40, 1)[:72]
        'Parameters no optimiser held at step 2 are held by one at step 40 (epoch'
    """
    return (
        f"Parameters no optimiser held at step {told} are held by one at step {step} "
        f"(epoch {epoch}): {listed(names, 6)} (a parameter group added during the run); they "
        "train from then on, after steps at their initial values."
    )


def moving_text(names: Sequence[str], told: int, step: int, epoch: int) -> str:
    """The layers told frozen at step ``told`` changing again at ``step``, in words.

    Example::

        >>> moving_text(["conv1", "conv2"], 20, 60, 1)[:60]
        'Layers change again at step 60 (epoch 1): `conv1`, `conv2`, '
    """
    shown = listed(names, 6)
    return (
        f"Layers change again at step {step} (epoch {epoch}): {shown}, still at step {told}, "
        "now train (a schedule that unfreezes them, such as `BackboneFinetuning`). A note."
    )


def frozen_text(
    names: Sequence[str],
    reasons: Mapping[str, str],
    watched: int,
    since: int,
    step: int,
    epoch: int,
    untrained: float | None = None,
    scale: float | None = None,
    drifting: bool = False,
) -> str:
    """The finding for ``names`` (of ``watched`` layers) unchanged since step ``since``.

    ``reasons``: each layer's ``still_reason``. ``untrained``: the kernels' neighbour
    correlation where the layers kept as set up look as initialised (``untrained_look``):
    a problem, frozen random features; else a note. ``scale``: a 16-bit loss scaler's
    scale now, if there is one. ``drifting``: their gradients are 0 while the optimiser's
    momentum (or weight decay) still moves them.

    Example::

        >>> why = {"conv1": "no_grad", "conv2": "lr_zero"}
        >>> frozen_text(["conv1", "conv2"], why, 3, 20, 60, 1).split("; ", 1)[1][:62]
        '`conv1`: `requires_grad=False`; `conv2`: a learning rate of 0.'
    """
    shown = listed(names, 8)
    kinds = list(dict.fromkeys(reasons[n] for n in names))
    if len(kinds) == 1:
        why = ALL_OF_THEM.get(kinds[0], REASONS[kinds[0]])
    else:
        why = "; ".join(
            ", ".join(f"`{n}`" for n in names if reasons[n] == kind) + f": {REASONS[kind]}"
            for kind in kinds
        )
    tiny = {"lr_tiny", "lr_cut"} & set(kinds)
    moved = "barely changed (under 0.1% a log)" if tiny else "not changed at all"
    if drifting:
        moved = "learnt nothing (only the optimiser's momentum or weight decay moves them)"
    head = (
        f"Frozen layers at step {step} (epoch {epoch}): {len(names)} of {watched} watched "
        f"layers have {moved} since step {since}: {shown}; {why}."
    )
    if kinds in (["gradient_blocked"], ["zeroed_after_backward"]):  # a problem, not a choice
        return f"{head} Fix that first: those layers learn nothing."
    if kinds in (["nothing_learns"], ["zero_gradient"], ["hooks_zeroed"]):  # the step is broken
        return f"{head} Fix that first: the model cannot learn at all."
    if kinds == ["loss_at_zero"]:
        return (
            f"{head} Nothing learns from here: where the samples meet the margin, harder ones "
            "(mined negatives, a larger margin) give it something to learn; else find what "
            "turns the loss to 0."
        )
    if kinds == ["nonfinite_gradient"]:
        scaler = "" if scale is None else (
            f" The loss scaler has lowered its scale to {scale:.3g} without finding a step "
            "whose gradients fit float16, so some value overflows at any scale (a loss or an "
            "activation past float16's 65,504, a division by a tiny number): train in "
            '`precision="bf16-mixed"` or float32, or find the layer that overflows '
            "(`activations/*/nonfinite`)."
        )  # fmt: skip
        return f"{head} Fix that first: no step trains the model.{scaler}"
    if untrained is None and "no_gradient" in kinds:
        return (
            f"{head} A note: no optimiser setting keeps them; they follow from what stops "
            "the gradient (vanishing on the way down, silent units after them: "
            "`activations/*/grad_rms`, `activations/*/dead_strip`), which is the thing to fix."
        )
    if untrained is not None:
        return (
            f"{head} Their kernels look untrained: neighbouring taps are uncorrelated "
            f"(|r| = {abs(untrained):.2f}; trained kernels read 0.3 or more), as a random "
            "initialisation leaves them. Layers frozen without pretrained weights compute "
            "fixed random features, and only the layers after them learn. Load the pretrained "
            'weights before freezing (torchvision `weights="DEFAULT"`, timm '
            f"`pretrained=True`, or your checkpoint), or {_unfreeze(kinds)}."
        )
    if set(kinds) == {"lr_zero"}:  # a schedule at 0 freezes the whole run, not a backbone
        return (
            f"{head} A note: a learning rate of 0 stops every layer it applies to; if a "
            "scheduler took it there, check its schedule (a `LambdaLR` factor of 0, a decay "
            "that reaches 0 before the run ends)."
        )
    if set(kinds) == {"lr_cut"}:  # the whole run's rate: the schedule is the thing to check
        return (
            f"{head} A note: a rate cut that far stops every layer it applies to; check the "
            "schedule (a scheduler stepped every batch where it was meant every epoch, "
            "milestones counted in steps, a decay that reaches 0 before the run ends)."
        )
    if set(kinds) == {"lr_tiny"}:  # a pretrained backbone fine-tuned gently: its choice
        return (
            f"{head} A note: right for pretrained layers meant to stay nearly fixed; if not, "
            f"{_unfreeze(kinds)}."
        )
    return (
        f"{head} A note: right when you freeze a backbone on purpose; if not, {_unfreeze(kinds)}."
    )


def _unfreeze(kinds: Sequence[str]) -> str:
    """What lets the layers train again, for their ``still_reason`` s."""
    tiny = "give their parameter group a learning rate near the others'"
    if set(kinds) == {"lr_tiny"}:
        return tiny
    if set(kinds) == {"own_gradient_removed"}:
        return "remove the hook that zeroes their gradient"
    train = "set `requires_grad=True` and pass their parameters to the optimiser in "
    train += "`configure_optimizers`"
    if "lr_tiny" in kinds:
        train += f"; {tiny}"
    if "lr_zero" in kinds:
        train += ", with a learning rate above 0"
    if "detached" not in kinds:
        return train
    cut = "remove the `.detach()` or `torch.no_grad()` that cuts their output off from the loss"
    cut += " (or pass `use_reentrant=False` to `checkpoint`)"
    return cut if set(kinds) == {"detached"} else f"{train}; {cut}"
