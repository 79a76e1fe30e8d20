"""Not learning in words where the targets are no class labels.

A loss flat from the start (``flat_loss``), one answer for every pixel or image, or the
objects found but not their class (``label_prior``), predictions at the targets' mean
(``blind_level``), one output for every image whatever its units (``same_output``): the
``not_learning`` headline of those verdicts, the note said while a run is young, and the
words once one is withdrawn.
``learning_words.headline`` hands them here.
"""

from __future__ import annotations

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.small_steps import update_clause
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import num, when

__all__ = ["unlabelled_early", "unlabelled_gone", "unlabelled_headline"]


EARLY_FLAT = (
    " A note for now: a run's loss can stay flat for its first steps; a problem if it still "
    "does past a quarter of the run."
)


EARLY_ONE = (
    " A note for now: a model can give the commonest answer everywhere for its first steps; "
    "a problem if it still does past a quarter of the run."
)


EARLY_SURER = (
    " A note for now: a model can give one answer everywhere while its loss falls for a "
    "while; a problem if it still does in the run's last quarter."
)
RANKED = 0.75  # a mean AUC over the labels from which a model tells its images apart

EARLY_MEAN = (
    " A note for now: a model can predict the targets' mean for its first steps; a problem "
    "if it still does past a quarter of the run."
)


EARLY_SAME = (
    " A note for now: a model's outputs can differ little from image to image for its first "
    "steps; a problem if they still do not past a quarter of the run."
)


EARLY_OBJECTS = (
    " A note for now: a model often finds its objects well before it tells their classes "
    "apart; a problem if it still cannot in the run's last quarter."
)


def _flat(v: Verdict, cut: str) -> str:
    """The loss flat from the start, for targets that are no class labels (``flat_loss``)."""
    f, now = v.figures, v.detected
    val = ""
    if f.get("val_now") is not None:
        val = f", the val loss {num(f['val_first'])} -> {num(f['val_now'])}"
    return (
        f"Not learning since {when(v.since)} (from the start): after {now.step} steps the "
        f"loss `training_step` returns is {num(now.returned_loss)} on average since the "
        f"validation before, against {num(f['start_loss'])} over the first steps{val}: it "
        f"has not moved in {f['evaluations']} validations, the updates too small to bring it "
        f"down{'' if 'last update' in cut else update_clause(now)}.{cut}"
    )


def _one_answer(v: Verdict, cut: str) -> str:
    """One answer for every pixel or image, dense or multi-label (``label_prior``)."""
    f, now = v.figures, v.detected
    if f.get("objects"):
        given = (
            f"it tells the objects from the background but not their class: "
            f"{num(f['object_acc'], True)} of the pixels it finds of the classes other than "
            f"class {f['answer']} get their class, as answering their commonest class "
            f"everywhere would ({num(f['object_major'], True)})"
        )
    elif f["task"] == "pixels":
        given = (
            f"it answers class {f['answer']} at {num(f['predicted'], True)} of the val probe's "
            f"pixels, every image alike, where {num(f['truth'], True)} of the target pixels "
            f"are class {f['answer']}"
        )
    elif f["task"] == "classes":
        given = (
            f"it answers class {f['answer']} for {num(f['predicted'], True)} of the val "
            f"probe's images, where {num(f['truth'], True)} of them are class {f['answer']}"
        )
    else:
        labels = "no label" if not f["answer"] else f"the same {f['answer']} label(s)"
        given = (
            f"it gives {labels} to {num(f['predicted'], True)} of the val probe's images, "
            f"where {num(f['truth'], True)} of their targets are that set"
        )
    if f.get("objects"):
        learnt = "It finds where the objects are, not what they are"
    elif (f.get("rank") or 0.0) >= RANKED:  # it tells the images apart below the threshold
        learnt = (
            f"Its scores do rank the images holding each label above the others (a mean AUC "
            f"of {f['rank']:.2f} over the labels), but at the threshold (a logit past 0, a "
            "probability past 0.5) every image gets the same answer"
        )
    else:
        learnt = "It has learnt how common each answer is, not to tell it from the images"
    losses = f"{num(f['loss_before'])} -> {num(now.returned_loss)} since the validation before"
    if f.get("val_rising"):  # the training targets teach that answer, the val ones others
        loss = (
            f"while the loss `training_step` returns still falls ({losses}) and the val loss "
            f"rises ({num(f['val_first'])} -> {num(now.val_loss)}): what it learns from the "
            "training targets does not hold for the val ones (targets altered in "
            "`training_step`, or labels that differ between the splits)"
        )
    elif f.get("surer"):
        loss = (
            f"while the loss `training_step` returns still falls ({losses}): it grows surer "
            "of that one answer, which the loss rewards"
        )
    else:
        loss = f"and the loss `training_step` returns has stopped falling ({losses})"
    return (
        f"Not learning since {when(v.since)}: {given}. {learnt}: so at "
        f"{f['evaluations']} validations in a row, {loss}.{cut}"
    )


def unlabelled_early(v: Verdict) -> str | None:
    """The young run's note for a verdict read without class labels (``None``: another)."""
    f = v.figures
    if f.get("objects"):
        return EARLY_OBJECTS
    if f.get("one_answer"):
        return EARLY_SURER if f.get("surer") else EARLY_ONE
    if f.get("at_mean"):
        return EARLY_MEAN
    if f.get("same_output"):
        return EARLY_SAME
    return EARLY_FLAT if f.get("loss_only") else None


def unlabelled_gone(v: Verdict) -> str | None:
    """The words of a verdict read without class labels once withdrawn (``None``: another)."""
    f, now = v.figures, v.detected
    if f.get("one_answer"):
        return (
            f"The model's answers differ again at epoch {now.epoch}: the commonest one is "
            f"given to {num(now.prior_pred, True)} of the val probe's "
            f"{'pixels' if f['task'] == 'pixels' else 'images'}."
        )
    if f.get("at_mean"):  # not accuracy: real-valued targets (hunt 101)
        return (
            f"The val probe's predictions score better than the targets' mean at epoch "
            f"{now.epoch}: an MSE of {num(now.probe_mse_val)} against the mean's "
            f"{num(now.blind_mse)}."
        )
    if f.get("same_output"):
        return (
            f"The model's outputs differ from image to image again at epoch {now.epoch} "
            f"({_share(now.probe_spread_val)} of their size{_against(now)})."
        )
    if f.get("loss_only"):
        return (
            f"The training loss moves at epoch {now.epoch}: {num(now.returned_loss)} since the "
            f"validation before, against {num(f['start_loss'])} over the first steps."
        )
    return None


def unlabelled_headline(v: Verdict, cut: str) -> str | None:
    """The headline of a verdict read without class labels (``None``: another), ``cut`` after."""
    if v.figures.get("loss_only"):
        return _flat(v, cut)
    if v.figures.get("one_answer"):
        return _one_answer(v, cut)
    if v.figures.get("at_mean"):
        return _at_mean(v, cut)
    if v.figures.get("same_output"):
        return _same_output(v, cut)
    return None


def _at_mean(v: Verdict, cut: str) -> str:
    """Predictions scoring no better than the targets' mean (``blind_level``)."""
    f = v.figures
    own, blind = num(f["own_mse"]), num(f["blind_mse"])
    if f["own_mse"] > WORSE * f["blind_mse"]:  # not even the average (hunt 101: 1.5x it)
        said = f"above the {blind} that predicting the targets' mean for every image scores"
        learnt = "not even their average"
    else:
        said = f"as predicting the targets' mean for every image would ({blind})"
        learnt = "their average"
    return (
        f"Not learning since {when(v.since)}: the val probe's predictions score an MSE of "
        f"{own}, {said}, at {f['evaluations']} validations in a row and not falling: it has "
        f"learnt {learnt}, not to read them from the images.{cut}"
    )


WORSE = 1.1  # an MSE this far over the mean's: the model has not learnt the mean either


def _same_output(v: Verdict, cut: str) -> str:
    """One output for every image, whatever its units (``same_output``)."""
    f, now = v.figures, v.detected
    if f["unit_rows"]:  # a normalised embedding: its distance from its mean point
        alike = f"the embeddings lie within {num(f['spread'])} of one point of the unit sphere"
        what = "an embedding drawn to one point (a metric or contrastive loss's collapse)"
    elif f["target_spread"] is not None:
        alike = (
            f"they vary from image to image by {_share(f['spread'])} of their size, the "
            f"targets by {_share(f['target_spread'])} of theirs"
        )
        what = (
            "every prediction the same (a VAE whose KL term outweighs its reconstruction: "
            "posterior collapse; units that all died or saturated)"
        )
    else:
        alike = f"they vary from image to image by {_share(f['spread'])} of their size"
        what = "one output for all (units that all died or saturated; a collapse)"
    return (
        f"Not learning since {when(v.since)}: the model gives the same output for every image "
        f"of the val probe ({alike}) at {f['evaluations']} validations in a row, and the loss "
        f"`training_step` returns has stopped falling ({num(f['loss_before'])} -> "
        f"{num(now.returned_loss)} since the validation before): its outputs no longer "
        f"depend on the images, {what}.{cut}"
    )


def _share(x: float | None) -> str:
    """A spread over a size: a percentage, or the share itself where under 0.1%."""
    return num(x, True) if x is None or x >= 1e-3 else num(x)


def _against(e: Evaluation) -> str:
    """The outputs' spread as values beside their targets', where those are read."""
    if e.probe_spread_abs is None or e.target_spread_abs is None:
        return ""
    return f"; {num(e.probe_spread_abs)} as values, the targets {num(e.target_spread_abs)}"
