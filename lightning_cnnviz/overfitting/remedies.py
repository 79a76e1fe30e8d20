"""What to try, per kind of ``OverfittingMonitor`` finding.

Fixed lists, each kind's figures choosing among them, with the run's own settings first
where one explains a model at chance (``learning_remedies.py``).

Example::

    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> ev = Evaluation(46, 0, lr=1e-3, dropout=0.9, classes=10.0)
    >>> remedies(Verdict("not_learning", ev, ev, None, {"non_finite": False}))[0][:20]
    '**Lower the dropout*'
"""

from __future__ import annotations

from lightning_cnnviz.core.decay import adaptive_l2_remedy
from lightning_cnnviz.core.settings import HIGH_MOMENTUM
from lightning_cnnviz.overfitting import class_figures, learning_remedies, val_relabelled
from lightning_cnnviz.overfitting.chance_levels import chance_classes
from lightning_cnnviz.overfitting.rules import accuracy_climbed
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = ["REMEDIES", "remedies"]

REMEDIES = {
    "overfitting": (
        '**Stop at the best epoch** ({best}): add `EarlyStopping(monitor="{val_key}", '
        'patience=...)` and `ModelCheckpoint(monitor="{val_key}")` to keep those weights.',
        "**Augment the training data** (random shifts, small rotations, crops, noise).",
        "**Add weight decay** (e.g. `weight_decay=5e-4`; with Adam prefer AdamW) or dropout.",
        "**Use more training data** or a smaller model.",
    ),
    "memorisation": (
        "**Check the training labels**: look at the training images with the highest loss; "
        "noisy or wrong labels are what a model can only memorise.",
        "**Keep the weights of the best val accuracy** ({best}): "
        '`ModelCheckpoint(monitor="{acc_key}", mode="max")`, or train for fewer epochs.',
        "**Use a loss robust to label noise**: label smoothing "
        "(`F.cross_entropy(..., label_smoothing=0.1)`), mixup, or a noise-robust loss.",
        "**Regularise**: weight decay, dropout, augmentation slow memorisation down; with "
        "clean labels and a small training set, more training data or a smaller model.",
    ),
    "not_learning": (
        "**Try another learning rate**: 10x lower if the loss jumps or went NaN (a rate far "
        "too high keeps a model at chance), 10x higher if it sits flat at its chance level.",
        "**Check the data and the loss**: labels aligned with images, inputs normalised, "
        "logits (not probabilities) into `cross_entropy`.",
        "**Check the gradients reach the first layers** (`ActivationMonitor`, the gradient "
        "norms): saturating activations or a missing normalisation stop learning.",
    ),
    "generalisation_gap": (
        "**Compare the splits**: look at training and validation images side by side "
        "(`gradcam/train` vs `gradcam/val`: what the training CAMs light up off the object is "
        "a cue); check that both go through the same preprocessing and normalisation, and "
        "that augmentation is applied to training images only.",
        "**Check the labels**: the same class index means the same class on both splits "
        "(e.g. a label mapping built separately per split).",
        "**If the splits match**, the model memorises its training set: more data, "
        "augmentation, weight decay or a smaller model.",
    ),
    "unstable_training": (
        "**Lower the learning rate** (3-10x), or decay it as training goes on (cosine, "
        "step decay): a rate that suits the start overshoots once the model sits in a "
        "narrower minimum.",
        "**Clip gradients** (`Trainer(gradient_clip_val=1.0)`) and keep the weights of the "
        'lowest loss: `ModelCheckpoint(monitor="{val_key}")`.',
    ),
    "class_imbalance": (
        "**Balance what the model trains on**: draw batches with a `WeightedRandomSampler` "
        "(weight 1 / class count per image), or weight the loss by class "
        "(`F.cross_entropy(..., weight=...)`, inversely to the class shares).",
        "**Judge it per class**: log the balanced accuracy or per-class recall (torchmetrics' "
        '`MulticlassAccuracy(num_classes, average="macro")`); plain accuracy is carried by '
        "the common classes.",
        "**Get or augment more images of the rare classes**; losses made for imbalance "
        "(focal loss, logit adjustment) help too.",
    ),
    "loss_mismatch": (
        "**Pass the raw logits** to `F.cross_entropy` / `nn.CrossEntropyLoss`: drop the "
        "softmax before it (in `training_step` or as the model's last layer).",
        "**If the model must end in a softmax**, end it in `log_softmax` and use `NLLLoss`; "
        "apply softmax for probabilities outside the loss (at inference, in metrics).",
    ),
    "val_metrics_differ": (
        "**Check what `validation_step` scores**: the same module, in eval mode, on the batch "
        "as the dataset gives it; an EMA of the weights needs a decay its run can catch up "
        "with (0.999 is some 1,000 steps' memory, 0.9999 10,000) or a warm-up of the decay.",
        "**Check the metric and the loss on one batch by hand**: `(self(x).argmax(1) == "
        "y).float().mean()` beside what is logged; `torch.isfinite(x).all()` on the val "
        "inputs.",
    ),
    "inputs_differ": (
        "**Give both splits the same transform** but for the augmentation: the same "
        "normalisation (mean and std), value range (0..1 or 0..255), channel order (RGB/BGR) "
        "and resizing; a val transform built separately is the usual cause.",
        "**Check the datasets' own preprocessing**: two sources, or a val set saved after "
        "a different pipeline.",
    ),
    "lr_decayed_early": (
        "**Check how often the scheduler steps**: Lightning steps it once per epoch unless "
        '`interval="step"`; with `"step"`, `StepLR(step_size=30)` or `MultiStepLR` milestones '
        "count batches, not epochs.",
        "**Decay later or less**: e.g. cosine over the whole run (`CosineAnnealingLR(opt, "
        'T_max=trainer.estimated_stepping_batches)` with `interval="step"`), or a smaller '
        "`gamma`.",
    ),
    "weight_decay_too_strong": (
        "**Lower the weight decay** (10-100x): 1e-4 to 5e-2 is usual with AdamW, 1e-4 to 5e-4 "
        "with SGD; the decay per step is the learning rate times it.",
        "**Or add normalisation layers** (BatchNorm/GroupNorm): they undo the weights' scale, "
        "so the decay no longer shrinks what the model computes.",
    ),
    "bn_mismatch": (
        "**Let the running statistics catch up**: a larger BatchNorm `momentum` (e.g. 0.1 "
        "-> 0.3), or recompute them on training batches before evaluating.",
        "**Use larger or more varied batches**; tiny or class-sorted batches give batch "
        "statistics far from the whole data's.",
        "**Replace BatchNorm by GroupNorm/LayerNorm** where batches must stay small.",
        "**Check what training batches go through and validation images do not**: strong "
        "augmentation, mixup or noise (in the `Dataset` or in `training_step`) gives batch "
        "statistics of altered images; recompute the running statistics on clean training "
        "images before evaluating, or soften it. A normalisation applied in `training_step` "
        "and not in `validation_step` does the same to every val batch: apply it in both "
        "(or in the `Dataset`).",
    ),
}


# The run's own settings that keep a model at chance, checked before the generic remedies.
def remedies(v: Verdict) -> list[str]:
    """What to try for ``v``: for ``not_learning``, the run's settings that explain it first.

    Example::

        >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
        >>> ev = Evaluation(46, 0, lr=5e-4, lr_initial=0.05, classes=10.0)
        >>> remedies(Verdict("not_learning", ev, ev, None, {"non_finite": False}))[0][:33]
        '**Raise the learning rate**: it i'
    """
    generic = list(REMEDIES[v.kind])
    if v.kind == "weight_decay_too_strong" and v.figures.get("decay_per_step") is None:
        # an adaptive optimiser's L2 (hunt 49: Adam's `weight_decay=1.0`)
        return [adaptive_l2_remedy(v.figures["weight_decay"]), *generic[1:]]
    val = v.figures.get("moved") or v.figures.get("items_moved")
    train = v.figures.get("moved_train") or "train_items_moved" in v.figures
    if v.kind == "inputs_differ" and (val or train):
        split, also = (
            ("val", "")
            if val
            else ("training", ", a curriculum step, a cue drawn on training images only")
        )
        return [
            f"**Find what changes the {split} data mid-run**: a callback or hook that sets "
            f"the {split} dataset's transform or swaps the set, a `setup` that runs again "
            f"(`reload_dataloaders_every_n_epochs`){also}; look at a {split} batch before "
            "and after the change.",
            *generic[:1],
        ]
    if v.kind == "inputs_differ" and v.figures.get("as_loaded"):
        return [
            "**Prepare both splits alike**: the same normalisation in both loaders' "
            "`collate_fn` (or in the datasets' transform), with the augmentation on top in "
            "the training one only; a normalisation in one loader's collate is the usual "
            "cause.",
        ]
    if v.kind == "inputs_differ" and v.figures.get("in_steps"):
        return [
            "**Preprocess in one place**: in the datasets' transform, in "
            "`on_after_batch_transfer` (Lightning runs it for every loop) or in a method both "
            "steps call; a normalisation written in `training_step` only is the usual cause.",
            "**Make an augmentation in `training_step` milder** where one is there: erasing "
            "or mixing so strong that the images' spread changes 2x or more leaves training "
            "images unlike any the model is validated on.",
        ]
    if (
        v.kind == "loss_mismatch"
        and v.figures.get("fed") == "negated"
        and (v.figures.get("returned_loss") or 0.0) >= 0
    ):
        return [
            "**Check the loss's formula against its definition**: it must grow as the "
            "label's probability falls (a focal loss weighs by `(1 - p_t) ** gamma`, a dice "
            "loss is `1 - dice`); try it on one batch with the right and with shuffled "
            "labels: the right ones must score lower."
        ]
    if v.kind == "loss_mismatch" and v.figures.get("fed") == "negated":
        return [
            "**Return the loss itself** from `training_step` (`F.cross_entropy(logits, y)`, "
            "never below 0), not its negative; a term subtracted from it (an entropy bonus, "
            "a regulariser) must stay smaller than it."
        ]
    if v.kind == "loss_mismatch" and v.figures.get("fed") == "unbounded":
        return [
            "**Check each term `training_step` adds to the loss**: a penalty is added "
            "(`loss + c * w.pow(2).sum()`), a bonus subtracted stays smaller than the loss "
            "(`ce - beta * entropy`, `beta <= 1`); log the cross-entropy on its own to read "
            "the fit."
        ]
    if v.kind == "loss_mismatch" and v.figures.get("fed") == "scaled":
        return [
            "**Compute the loss on the model's outputs as they are** "
            "(`F.cross_entropy(logits, y)`); where a temperature divides them, keep it near 1, "
            "and log the cross-entropy of the outputs themselves beside the loss."
        ]
    if v.kind == "loss_mismatch" and v.figures.get("fed") in ("scores", "scores_in_step"):
        return [
            "**Use `F.cross_entropy` on the logits** (it applies log-softmax itself), or put "
            "`log_softmax(dim=1)` before `F.nll_loss` / `NLLLoss`."
        ]
    if v.kind == "class_imbalance" and v.figures.get("one_class"):
        return [
            "**Look at the training items**: `dataset[i]` for a few different `i` should give "
            "different images and labels; a `__getitem__` that ignores `i`, a label column "
            "read wrong or a filter that kept one class gives one class only."
        ]
    if v.kind == "class_imbalance" and class_figures.shifted(v.figures):
        by = -v.figures["shift"]
        return [
            f"**Map the labels alike in both splits**: the val labels read {by:+d} against "
            "the training ones; look at a few items of each split with their labels "
            "(a `target_transform`, a `label - 1` or a 1-based label column in one of them)."
        ]
    if v.kind == "class_imbalance" and v.figures.get("missing") and not v.figures["one_class"]:
        gone = ", ".join(map(str, v.figures["missing"]))
        generic.insert(
            0,
            f"**Put images of class {gone} in the training set**: check how the split was "
            "made (by class, or by a column sorted by class?) and any filter or label "
            "mapping on the training data. Balancing the batches cannot add a class that "
            "is not there.",
        )
    elif v.kind == "class_imbalance" and v.figures.get("common"):
        left, at = ", ".join(map(str, v.figures["ignored"])), v.figures.get("predicted_at")
        if at is not None:  # learnt, then lost: what changed during the run
            return [
                f"**Look at what changed for class {left} after step {at}**: training batches "
                f"from then on beside earlier ones (do they still hold class {left}, labelled "
                "so?), and any label map, filter, sampler or loss `weight=` / `ignore_index` "
                "a callback or schedule sets during the run.",
                generic[1],
            ]
        return [
            f"**Give class {left} its weight in the loss**: check the `weight=` passed to "
            "`F.cross_entropy` / `nn.CrossEntropyLoss` (no 0 or near-0 for it), its "
            f"`ignore_index` (the default -100, not {left}) and any mask applied to the loss or "
            f"the labels; and that the training loader draws class {left} at all (count the "
            "labels of a few hundred training batches: a sampler of your own may skip it).",
            generic[1],
        ]
    elif v.kind == "class_imbalance" and class_figures.relabelled(
        v.figures, chance_classes(v.detected)
    ):
        left, taken = ", ".join(map(str, v.figures["ignored"])), v.figures["taken_for"]
        generic.insert(
            0,
            f"**Check the training labels of classes {left} and {taken}**: look at training "
            f"images labelled {taken}; images of {left} given label {taken} (a label mapping "
            "or annotation error) teach the model that they are one class. Balancing the "
            "batches would not fix wrong labels.",
        )
    if v.kind == "class_imbalance" and v.figures.get("dropped"):
        generic.insert(
            0,
            "**Shuffle the training loader** (`shuffle=True`) or keep its last batch "
            "(`drop_last=False`): read in a fixed order, the items at its end are never "
            "trained on.",
        )
    if v.kind == "val_metrics_differ" and v.figures.get("labels_changed"):
        return [val_relabelled.REMEDY]
    if v.kind == "bn_mismatch" and v.figures.get("nonfinite"):
        return [
            "**Find what writes NaN/Inf into the running statistics**: a batch of NaN/Inf "
            "inputs in a training step (`torch.isfinite(x).all()`), a checkpoint or "
            "`load_state_dict` carrying them, a callback or hook writing the buffers; then "
            "reset them (`module.reset_running_stats()`) and recompute them on training "
            "batches.",
        ]
    if v.kind == "bn_mismatch" and v.figures.get("raised"):
        # a setting raised during the run moves the weights past the running statistics:
        # set it back; a larger BatchNorm momentum would chase it (held-out hunt 125)
        return [
            learning_remedies.SET_BACK,
            "**Recompute the running statistics** on training batches before evaluating "
            "where the setting must stay (a forward pass in training mode under "
            "`torch.no_grad()`).",
        ]
    if v.kind == "bn_mismatch" and (m := v.detected.bn_momentum) is not None:
        # the run's own momentum: torchvision's MobileNet/EfficientNet use 0.01 (held out:
        # eval mode at 25% vs 90% with batch statistics; the same net at 0.1 was level)
        target = "0.1 (PyTorch's default)" if m < 0.1 else f"{min(2 * m, 0.5):g}"
        generic[0] = (
            f"**Let the running statistics catch up**: BatchNorm's `momentum` is {m:g} here "
            f"(each batch moves them {m:.1%} of the way); raise it to {target}, or recompute "
            "them on training batches before evaluating."
        )
    if v.kind == "overfitting" and (peak := accuracy_climbed(v.figures)) is not None:
        generic.insert(
            1,
            f"**Or keep the best val accuracy** (epoch {peak}, "
            f"{v.figures['peak_val_acc']:.1%}) if accuracy is what counts: "
            '`ModelCheckpoint(monitor="{acc_key}", mode="max")`. The val loss rose from '
            "over-confidence while the accuracy climbed: label smoothing or temperature "
            "scaling calibrate the confidences.",
        )
    high = (m := v.detected.momentum) is not None and HIGH_MOMENTUM <= m < 1
    if v.kind == "unstable_training" and learning_remedies.settings_raised(v) is not None:
        generic.insert(0, learning_remedies.SET_BACK)
    elif v.kind == "unstable_training" and high:
        generic.insert(
            0,
            f"**Lower the momentum** to 0.9 (it is {m:g}; Adam: `betas=(0.9, 0.999)`): at "
            f"{m:g} each update carries ~{1 / (1 - m):,.0f} past gradients.",
        )
    if v.kind != "not_learning" or v.figures.get("non_finite"):
        return generic
    if v.figures.get("loss_only"):  # no class labels: no chance level, no cross-entropy
        return [*learning_remedies.first(v), *learning_remedies.FLAT_LOSS, generic[2]]
    if v.figures.get("at_mean"):  # real-valued targets: nothing read from the images
        return [*learning_remedies.first(v), *learning_remedies.AT_MEAN, generic[2]]
    if v.figures.get("same_output"):  # a collapse: what pulls the outputs together
        return [*learning_remedies.first(v), *learning_remedies.SAME_OUTPUT, generic[2]]
    if v.figures.get("one_answer"):  # the label prior: the rare answers weigh too little
        return [*learning_remedies.first(v), *learning_remedies.one_answer(v), generic[2]]
    return learning_remedies.first(v) + generic
