"""Root causes: standing problems that later findings of other kinds may follow from.

A finding told later in the run names the one standing (``earlier_cause``), so that its
own remedies (a learning rate for a loss that jumps with each new class) are not read as
the cause: ``ROOT_CAUSES`` stand behind any kind, ``CONSEQUENCES`` behind given kinds
only (a model that diverged then sits at chance).

Example::

    >>> sorted(CONSEQUENCES["overfitting"]), ROOT_CAUSES["unshuffled_batches"]
    (['generalisation_gap', 'repeated_items'], 'the training batches come in class order')
"""

from __future__ import annotations

from typing import Any

from lightning_cnnviz.core.findings import Finding, findings_of

__all__ = ["CONSEQUENCES", "ROOT_CAUSES", "earlier_cause"]


# Problems that make others follow from them: a finding of another kind told later in the
# run names the one standing, so its remedies (a learning rate for a loss that jumps with
# each new class) are not read as the cause
ROOT_CAUSES = {
    "unshuffled_batches": "the training batches come in class order",
    "loss_mismatch": "the loss is not the one the model's outputs are made for",
    "unnormalised_inputs": "the inputs are far from unit scale",  # a note, and still a cause
    # a note (harmless under Adam), and still a cause: under SGD every step is that much larger
    "scaled_loss": "the training loss is scaled far from the model's own cross-entropy",
    # a problem when frozen at random initialisation or given no gradient (a frozen trained
    # backbone: a note)
    "frozen_layers": (
        "layers learn nothing (frozen at their random initialisation, or given no gradient)"
    ),
    # withdrawn as a note once gradients reach the first layers and the loss falls
    "vanishing_gradients": "the gradient vanishes before it reaches the first layers",
    "output_activation": "an activation holds classes' logits at 0",
    "symmetric_weights": "the units of a layer hold identical weights",
    "negative_biases": "biases initialised far below zero silence the units",
    "frozen_batch_norm": "BatchNorm layers sit in eval mode with their initial statistics",
    "weight_decay_too_strong": "weight decay takes too large a share of every weight each step",
    "unstable_training": "the training loss climbs back at an unchanged learning rate",
    "train_mode_in_validation": "validation runs the model in training mode",
    # a note (Adam minds less), and still a cause: under SGD every step is that much smaller
    "clipped_gradients": "gradient clipping by value cuts nearly every gradient entry",
}

# what reaches the model before anything in it: named even by a root cause told after it
# (inputs divided by 255 twice: vanishing gradients at step 120, their cause at step 12)
_INPUT_CAUSES = ("unnormalised_inputs",)
# notes (inputs off scale are healthy under BatchNorm, a scaled loss under Adam), yet causes
_NOTED_CAUSES = (
    "unnormalised_inputs", "scaled_loss", "clipped_gradients", "repeated_items",
    "eval_mode_switch",
)  # fmt: skip
# Problems that are no root cause in general, but one a later finding of a given kind
# follows from: a model that diverged sits at chance, which is then no separate failure;
# val curves read across splits that differ (half the val labels wrong: the val loss rose
# as the model grew sure of the right labels) measure the split, not the fit
_SPLITS = "the training and validation images differ in what decides the label"
# a training loader reaching few of its set's items (a note: a subset may be on purpose)
_FEW = "training reads few different images, the same ones every epoch"
_SWITCHED = "BatchNorm layers were switched to eval mode while the model trains"
CONSEQUENCES = {
    "not_learning": {
        "divergence": "training diverged",
        "dead_units": "a layer's units died and took the gradients of the layers before it",
        # a note (a freeze may be meant), and still a cause (held-out hunt 119)
        "eval_mode_switch": _SWITCHED,
        # the first loss far above chance at the init's weights (held-out hunt 124: every
        # weight x5, the first loss 72, the net at chance since, told with no cause)
        # (or inputs far from unit scale: its own words say which)
        "exploding_gradients": "the activations started far too large at initialisation (the "
        "first loss far above chance)",
    },
    "overfitting": {"generalisation_gap": _SPLITS, "repeated_items": _FEW},
    "memorisation": {"generalisation_gap": _SPLITS, "repeated_items": _FEW},
    "generalisation_gap": {"repeated_items": _FEW},
    # root causes themselves, behind which these stand: weight decay shrinking the first
    # layers' weights and gradients (held-out hunt 122: SGD with `weight_decay=0.5`, told
    # "Try: He (kaiming) initialisation; BatchNorm ...") ...
    "vanishing_gradients": {"weight_decay_too_strong": ROOT_CAUSES["weight_decay_too_strong"]},
    # ... and BatchNorm frozen mid-run, the loss up 3 steps after it (held-out hunt 121: a
    # timm resnet10t told "the updates have grown too large ... lower the learning rate")
    "unstable_training": {"eval_mode_switch": _SWITCHED},
}


# causes of a kind only where their figures say so: dead units that took the gradients
# before them with them
# (``activations.grad_collapse``), not those of a model at chance; exploding gradients
# read at initialisation (``initial_scale.init_explosion``), not a growth later in the run
_WHEN = {
    "dead_units": "gradient_collapse",
    "eval_mode_switch": "norm_layers",
    "exploding_gradients": "over_chance",
}
# a noted cause gives way to a problem of the given kind that found another cause (told
# without the figure that names the note's): a BatchNorm freeze 90 steps before a 30x rate
# jump was named behind `not_learning` over the divergence the jump caused (held-out hunt 121)
_YIELDS = {"eval_mode_switch": ("divergence", "eval_mode_since")}
# figures by which a problem names a cause of its own: a rate raised or jumped before it
_OWN_CAUSES = ("rate_rise",)
# the root causes that make no such cause: not those that make every update larger, which
# still stand behind a rate raised (the rate and the scale multiply)
_STEP_CAUSES = ("scaled_loss", "unnormalised_inputs", "weight_decay_too_strong")
_GIVE_WAY = tuple(k for k in ROOT_CAUSES if k not in _STEP_CAUSES)


def earlier_cause(
    trainer: object, kind: str, since: int | None = None, figures: dict[str, Any] | None = None
) -> str:
    """A sentence naming a standing root cause a ``kind`` problem may follow from.

    ``""`` where none stands (or ``kind`` is one of them). With ``since`` (the step the
    problem started at), not a cause that started after it: a BatchNorm mismatch since
    step 7 was told at step 126 as following from unstable training found at 126.

    A problem whose ``figures`` name a cause of its own (``_OWN_CAUSES``: the rate raised
    300x before a divergence) names no root cause that did not make it, and a later one
    names that problem before such a root cause (held-out hunt 123: BatchNorm frozen on
    purpose, the run at 94%, then the rate raised 300x: the divergence and the model at
    chance after it were told "may follow from `frozen_batch_norm` ... Fix that first").

    Example::

        >>> from lightning_cnnviz.core.findings import report
        >>> class Run: ...
        >>> run = Run()
        >>> report(run, Finding("overfitting", "unshuffled_batches", 0, 0, "in class order"))
        >>> print(earlier_cause(run, "divergence")[:66])
        This may follow from a problem reported first (step 0, `unshuffled
        >>> run = Run()
        >>> report(run, Finding("activations", "divergence", 15, 0, "the loss spiked"))
        >>> print(earlier_cause(run, "not_learning")[-59:])
        (step 15, `divergence`): training diverged. Fix that first.
        >>> earlier_cause(run, "dead_units")  # dead units with a divergence are part of it
        ''
        >>> run = Run()
        >>> report(run, Finding("activations", "dead_units", 30, 0, "silent", {"fc": 1.0}))
        >>> earlier_cause(run, "not_learning")  # silent in a model at chance: no cause named
        ''
        >>> report(run, Finding("activations", "dead_units", 30, 0, "silent",
        ...                     {"fc": 1.0, "gradient_collapse": 0.0}))
        >>> print(earlier_cause(run, "not_learning")[:63])
        This may follow from a problem reported first (step 30, `dead_u
        >>> run = Run()  # a freeze told as a note, then a divergence with a cause of its own
        >>> switch = {"norm_layers": 3}
        >>> report(run, Finding("activations", "eval_mode_switch", 40, 1, "eval", switch, "note"))
        >>> report(run, Finding("activations", "divergence", 140, 4, "the rate jumped 30x"))
        >>> print(earlier_cause(run, "not_learning")[-60:])
        (step 140, `divergence`): training diverged. Fix that first.
        >>> run = Run()  # a freeze told as a problem, then the rate raised 300x
        >>> report(run, Finding("activations", "frozen_batch_norm", 8, 0, "BatchNorm frozen"))
        >>> earlier_cause(run, "divergence", figures={"rate_rise": 300.0})
        ''
        >>> report(run, Finding("activations", "divergence", 160, 3, "300x", {"rate_rise": 300.0}))
        >>> print(earlier_cause(run, "not_learning")[-60:])
        (step 160, `divergence`): training diverged. Fix that first.
    """
    if kind in ROOT_CAUSES:  # a cause names what comes before any model (its inputs) and
        # what it is known to follow from
        causes = {k: ROOT_CAUSES[k] for k in _INPUT_CAUSES if k != kind}
        causes |= CONSEQUENCES.get(kind, {})
    else:
        causes = ROOT_CAUSES | CONSEQUENCES.get(kind, {})
    found = [f for f in findings_of(trainer) if since is None or _onset(f) <= since]
    for f in found:
        if f.kind in _WHEN and _WHEN[f.kind] not in f.figures:
            continue
        if f.severity == "note" and _yields(f, found):
            continue
        if f.kind in _GIVE_WAY and _own_cause(f, figures, found, causes):
            continue
        if f.kind in causes and (f.severity == "problem" or f.kind in _NOTED_CAUSES):
            if kind in _TOO_LARGE and f.kind == "scaled_loss" and f.figures.get("scale", 1) < 1:
                continue  # a loss scaled down: every step smaller
            why = causes[f.kind]
            if "eval_mode_since" in f.figures:  # a divergence the switch caused (hunt 119)
                why += f", after {_SWITCHED}"
            return (
                f"This may follow from a {f.severity} reported first (step {f.step}, "
                f"`{f.kind}`): {why}. Fix that first."
            )
    return ""


def _yields(note: Finding, found: list[Finding]) -> bool:
    """Whether a noted cause gives way to a problem that found another cause (``_YIELDS``)."""
    kind, names_it = _YIELDS.get(note.kind, (None, None))
    return any(
        f.kind == kind and f.severity == "problem" and names_it not in f.figures for f in found
    )


def _own_cause(
    f: Finding, figures: dict[str, Any] | None, found: list[Finding], causes: dict[str, str]
) -> bool:
    """Whether root cause ``f`` gives way to a cause of its own (``_OWN_CAUSES``) found since.

    Of the problem asked about (its ``figures``), or of a later problem it names instead.
    """
    if figures is not None and any(k in figures for k in _OWN_CAUSES):
        return True
    return any(
        g.kind in causes and g.kind not in ROOT_CAUSES and g.severity == "problem"
        and g.step >= f.step
        and any(k in g.figures for k in _OWN_CAUSES)
        for g in found
    )  # fmt: skip


# what updates too large do: a loss scaled down (smaller steps) is no cause of them (hunt 49:
# a loss weight ramped 0.01 -> 1 under SGD at lr 1.5, told "may follow from `scaled_loss`")
_TOO_LARGE = ("divergence", "exploding_gradients", "dead_units", "unstable_training")


def _onset(f: Finding) -> int:
    """The step a finding's failure started at, where its figures say (else its report's)."""
    steps = [f.figures.get(k) for k in ("since_step", "spike_step", "first_nonfinite_step")]
    return min([f.step, *(int(s) for s in steps if isinstance(s, int | float) and s >= 0)])
