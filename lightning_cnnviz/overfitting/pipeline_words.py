"""The data and loss plumbing findings in words.

A loss fed outputs it is not made for, logged val metrics that are not the model's own
(the two splits preprocessed differently: ``input_words.py``).

Part of ``headlines.py`` (each function words one kind's ``Verdict``).

Example::

    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> now = Evaluation(step=40, epoch=3, train_loss=0.2, val_loss=0.7)
    >>> figures = {"non_finite": True, "logged_loss": float("nan"), "probe_loss": 0.31}
    >>> val_metrics_differ(Verdict("val_metrics_differ", now, now, None, figures))[:44]
    'The logged val loss is nan since epoch 3 (st'
"""

from __future__ import annotations

import math

from lightning_cnnviz.overfitting.val_relabelled import changed_text
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import num, when

__all__ = ["loss_mismatch", "val_metrics_differ"]


def loss_mismatch(v: Verdict) -> str:
    """A loss fed outputs it is not made for, or returned with its sign flipped."""
    f, now, since = v.figures, v.detected, v.since
    if v.severity == "note":
        return (
            f"The logged val loss ({num(now.val_loss)}) reads the model's outputs as "
            f"what they are again ({when(now)}): their own cross-entropy on the val "
            f"probe is {num(now.probe_loss_val)}."
        )
    if f.get("fed") == "negated" and (f["returned_loss"] or 0.0) >= 0:
        return (
            f"The loss `training_step` returns falls ({num(f['returned_loss'])}) as the "
            "model gets the training labels wrong (training accuracy "
            f"{num(f['train_probe_acc'], True)}, below chance; its own cross-entropy "
            f"{num(f['own_train_loss'])}, chance ln {int(now.classes or 2)} = "
            f"{math.log(now.classes or 2):.3f}), since {when(since)}: the loss is "
            "minimised by wrong answers (a `p` where `1 - p` belongs, as in a focal loss's "
            "`(1 - p_t) ** gamma` or a dice loss's `1 - dice`; a sign flipped; targets "
            "inverted), so training maximises the error (val accuracy "
            f"{num(f['val_acc'], True)})."
        )
    if f.get("fed") == "negated":
        return (
            "The loss `training_step` returns falls below zero "
            f"({num(f['returned_loss'])}) while the model's own cross-entropy climbs past "
            "chance "
            f"({num(f['own_train_loss'])}, chance ln {int(now.classes or 2)} = "
            f"{math.log(now.classes or 2):.3f}), since {when(since)}: `training_step` "
            "returns a loss that rewards wrong answers (its sign flipped, or a "
            "subtracted term outweighing it), so training maximises the error (val "
            f"accuracy {num(f['val_acc'], True)})."
        )
    if f.get("fed") == "unbounded":
        return (
            "The loss `training_step` returns falls below zero without limit "
            f"({num(f['returned_loss'])}, where a cross-entropy less a bounded bonus stays "
            f"above -ln {int(now.classes or 2)}) while the model classifies (its own "
            f"cross-entropy {num(f['own_train_loss'])}, val accuracy "
            f"{num(f['val_acc'], True)}), since {when(since)}: the loss holds a term that "
            "training drives down without end, a penalty or regulariser with its sign "
            "flipped (`loss - c * w.pow(2).sum()`), a bonus weighted past the loss, or "
            "`nll_loss` of raw scores added to it. The weights or outputs grow without "
            "limit, and the loss curve no longer tells how well the model fits."
        )
    if f.get("fed") == "scaled":
        k = int(now.classes or 2)
        return (
            f"The loss `training_step` returns ({num(f['returned_loss'])}) and the logged val "
            f"loss ({num(f['val_loss'])}) have sat at their chance level ln {k} = "
            f"{math.log(k):.3f} since {when(since)}, while the model's own outputs score "
            f"{num(f['own_train_loss'])} (val accuracy {num(f['val_acc'], True)}): the loss "
            "does not read the outputs as the model gives them. Outputs divided inside the "
            "loss (a temperature, a large constant) or another tensor than the model's "
            "outputs leave the loss's gradient near zero, so learning stalls (or training "
            "runs on outputs far noisier than in eval mode: a dropout near 1)."
        )
    if f.get("fed") == "scores_in_step":
        return (
            "`training_step` feeds its loss raw scores (logits) where it expects "
            f"log-probabilities: the loss it returns is negative ({num(f['returned_loss'])}), "
            "as `nll_loss` of the outputs as they are is, minus the mean output for the "
            f"label ({num(f['raw_nll'])} on the val probe), since {when(since)}. A "
            "cross-entropy is never negative: this one falls without bound as the model "
            "inflates the label's output, and learns nothing that classifies (val accuracy "
            f"{num(f['val_acc'], True)}; the outputs' own cross-entropy is "
            f"{num(f['own_loss'])})."
        )
    if f.get("fed") == "scores":
        what = "probabilities (a softmax)" if f.get("in_model") else "raw scores (logits)"
        return (
            f"The loss is fed {what} where it expects log-probabilities: the logged val "
            f"loss ({num(f['val_loss'])}) is `nll_loss` of the outputs as they are, "
            f"minus the mean output for the label ({num(f['raw_nll'])} on the val probe), "
            f"since {when(since)}. A cross-entropy is never negative: this one falls "
            "without bound as the model inflates the label's output, and learns nothing "
            f"that classifies (val accuracy {num(f['val_acc'], True)}; their own "
            f"cross-entropy is {num(f['own_loss'])})."
        )
    where = (
        "the model ends in a softmax, and the logged val loss "
        f"({num(f['val_loss'])}) is the cross-entropy of its outputs read as logits "
        f"({num(f['softmax_loss'])} on the val probe), not their negative "
        f"log-likelihood ({num(f['own_loss'])})"
        if f.get("in_model")
        else f"the logged val loss ({num(f['val_loss'])}) is the cross-entropy of the "
        f"model's outputs turned into probabilities (a softmax or a sigmoid: "
        f"{num(f['softmax_loss'])} on the val probe through a softmax), not of the outputs "
        f"themselves ({num(f['own_loss'])})"
    )
    return (
        f"The loss is fed probabilities: {where}, since {when(since)}. `cross_entropy` "
        "applies log-softmax itself: on probabilities it cannot fall below "
        f"{num(f['floor_loss'])} and its gradient vanishes as the "
        f"softmax saturates, so learning stalls (val accuracy {num(f['val_acc'], True)})."
    )


def val_metrics_differ(v: Verdict) -> str:
    """Logged val metrics that are not the model's own on the val probe."""
    f, now, since = v.figures, v.detected, v.since
    if v.severity == "note" and not f.get("early"):
        return f"The logged val metrics agree with the val probe again at {when(now)}."
    if f.get("unchanged"):
        return (
            f"The logged val metrics have not changed at all in {f['evaluations']} "
            f"validations (val loss {num(f['logged_loss'])} each time) while the model did "
            f"(its own loss on the val probe {num(f['probe_loss_first'])} -> "
            f"{num(f['probe_loss'])}), since {when(since)}: `validation_step` scores something "
            "that does not train (a frozen teacher, a copy never updated, a result cached "
            "once); every val curve reads that."
        )
    if f.get("elsewhere") and f.get("logged_acc") is not None:
        return (
            f"`validation_step` scores another module than the one trained (an average of "
            f"the weights swapped in, or a copy it calls), and its logged val accuracy "
            f"({num(f['logged_acc'], True)}) trails the model's own "
            f"{num(f['probe_acc'], True)} on the val probe (eval mode) since {when(since)}. "
            + (
                "It has not risen since, with half the run gone: it does not catch up in this "
                "run (an average of the weights whose decay is too slow for a run this long: "
                "lower it, 0.99-0.999, or validate the model itself); the logged val curves "
                "say nothing of the model."
                if f.get("stalled")
                else "An average of the weights (EMA) or a teacher validated on purpose lags "
                "like this while the model learns fast; the logged val curves are that "
                "module's, and the checks judge the model from its own figures."
            )
        )
    if "labels_changed" in f:
        return changed_text(f, when(since))
    if "loop_acc" in f:
        return (
            f"`validation_step` does not score the images as the dataset gives them: on "
            f"the val probe the model scores {num(f['own_acc'], True)} on them and "
            f"{num(f['loop_acc'], True)} in the validation loop (since {when(since)}). The "
            "step changes the images before the model sees them (a normalisation, a "
            "resizing or a transform of its own) or scores other weights; every val "
            "figure reads that."
        )
    if f["non_finite"]:
        return (
            f"The logged val loss is {num(f['logged_loss'])} since {when(since)}, while the "
            f"model's own cross-entropy on the val probe is {num(f['probe_loss'])}: a "
            "non-finite value enters `validation_step` (a NaN or inf in the val data, a "
            "division by zero or a log of 0 in the loss), and the val curves say nothing."
        )
    return (
        f"The logged val accuracy ({num(f['logged_acc'], True)}) is not this model's: it "
        f"scores {num(f['probe_acc'], True)} on the val probe (eval mode), since "
        f"{when(since)}. `validation_step` scores other weights (an average of the "
        "weights, a teacher), changes the images before the model sees them, or computes "
        "the metric wrong; every val curve reads that."
    )
