"""``Evaluation``: what one validation showed, the record every validation rule reads.

Nothing here knows about Lightning. ``Measures`` (``measures.py``) fills one per
evaluation from the logged metrics, the probe figures (``metrics.py``), the run's
settings and the left-out classes (``imbalance.py``); the ``Detector`` keeps the series
(and saves it in checkpoints as plain data).

Example::

    >>> ev = Evaluation(step=20, epoch=1, train_acc=0.75, val_acc=0.5, ece_val=0.25)
    >>> ev.gap_acc, ev.ece_gap
    (0.25, None)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FEW_IMAGES", "Evaluation"]

FEW_IMAGES = 16  # a last batch under this reads accuracy in steps of 7+ points: no figure


@dataclass(frozen=True)
class Evaluation:
    """What one validation showed. Any figure may be ``None`` (not logged, or not measured).

    ``bn_screen`` is set only where the batch-statistics pass was skipped because its screen
    was quiet (``passes.py``): the estimated gap it went by. ``lr`` to ``lr_default``:
    the run's settings then (``core.settings.Settings``), which the remedies follow;
    ``run_share``: ``step`` over the run's planned steps (``None``: unknown length).
    ``ignored`` to ``missing``: the val probe's left-out classes and the training labels'
    shares, ``missing`` those with no training label (``imbalance.py``); ``split_classes``,
    ``split_taken``: classes learnt on the train probe and left out on the val probe, and
    what their val images are taken for (``class_gap.py``; measured where the train probe
    ran); ``loop_check``: the validation loop's accuracy on the val probe against a pass of
    the monitor's own on the dataset's images (``val_source.loop_check``; ``{}``: they
    agree); ``input_shift``: the channel whose statistics differ between the two probes'
    images (``{}``: none; ``split_inputs.py``), ``mild_shift`` the same past milder bars
    (``core.input_shift.MILD_MEAN``); ``restd_acc`` to ``restd_size``: where they do,
    the val probe's first images with each channel's mean and spread moved to the train
    probe's (``core.input_shift.restandardise``) against the same images as given;
    ``noisy_acc`` to ``noisy_size``: the train probe's first images with the val images'
    extra spread added as noise, against as given (``probe_logits._noised``);
    ``train_acc_images``: the images behind ``train_acc`` where it is one training batch's
    (a validation mid-epoch reads the latest step's value); ``val_images``: the images a
    validation sees (``val_acc``'s binomial error); ``probe_ce_probs_val``,
    ``probe_simplex_val``: what a loss fed probabilities would log on the val probe, and
    whether its outputs are probabilities;
    ``probe_nll_raw_val``: what ``nll_loss`` fed the outputs as they are would log
    (``softmax_match.candidates``; the loss they are made for is ``probe_loss_val``, its
    standard error ``probe_loss_se_val``, ``probe_ce_probs_val``'s
    ``probe_ce_probs_se_val``); ``probe_outside_val``: the share of val probe
    images whose largest output is at an index no label reaches, where the outputs are at
    least twice as wide as the labels' classes (``chance_levels.scores_elsewhere``).

    Example::

        >>> Evaluation(step=10, epoch=0, train_loss=0.25, val_loss=0.5).gap_loss
        0.25
    """

    step: int
    epoch: int
    train_loss: float | None = None
    returned_loss: float | None = None  # training_step's returned loss, mean since the last
    first_loss: float | None = None  # training_step's returned loss at the run's first step
    recent_loss: float | None = None  # ... over about its last 5 steps
    start_loss: float | None = None  # ... the mean of the run's first 10 steps
    val_loss: float | None = None
    train_acc: float | None = None
    val_acc: float | None = None
    ece_train: float | None = None
    ece_val: float | None = None
    conf_train: float | None = None
    conf_val: float | None = None
    probe_acc_train: float | None = None
    probe_acc_val: float | None = None
    prior_pred: float | None = None  # per pixel or multi-label: the commonest answer's share
    prior_truth: float | None = None  # ... the targets' share of that answer
    prior_major: float | None = None  # ... the targets' commonest answer's share
    prior_answer: float | None = None  # ... the class (multi-label: labels in the set)
    prior_task: str | None = None  # ... "pixels", "classes" (one-hot), "labels" (multi-hot)
    prior_obj_acc: float | None = None  # ... the other classes' pixels right
    prior_obj_major: float | None = None  # ... their commonest class's share among them
    prior_rank: float | None = None  # multi-label: the labels' mean AUC of the images' scores
    prior_rank_bn: float | None = None  # ... with batch statistics, on the pass's images (bn_size)
    prior_rank_at_bn: float | None = None  # ... in eval mode on those images (bn_ranks)
    prior_pred_bn: float | None = None  # ... the share given one set of labels, batch stats
    prior_pred_at_bn: float | None = None  # ... and in eval mode
    label_acc_bn: float | None = None  # ... the share of (image, label) answers right, batch
    label_acc_at_bn: float | None = None  # ... and in eval mode
    blind_mse: float | None = None  # real-valued targets: the MSE of their mean (flat_loss)
    blind_l1: float | None = None  # ... the mean absolute error of their median
    probe_mse_val: float | None = None  # ... the val probe's predictions' own MSE
    probe_l1_val: float | None = None  # ... and their own mean absolute error
    probe_in_units: float | None = None  # ... 1.0: the predictions sit where the targets do
    probe_spread_val: float | None = None  # how much val probe outputs vary across images
    probe_spread_abs: float | None = None  # ... as values, not over their size
    target_spread_val: float | None = None  # ... and their real-valued targets (same_output)
    target_spread_abs: float | None = None  # ... as values
    probe_unit_rows: float | None = None  # ... 1.0: (N, D) outputs of unit length
    probe_loss_train: float | None = None
    probe_loss_left_train: float | None = None  # ... on its images of the classes val leaves out
    left_share_train: float | None = None  # ... their share of the train probe
    probe_loss_val: float | None = None
    probe_ce_probs_val: float | None = None
    probe_simplex_val: float | None = None
    probe_nll_raw_val: float | None = None
    probe_loss_se_val: float | None = None
    probe_ce_probs_se_val: float | None = None
    probe_outside_val: float | None = None
    conf_bn: float | None = None
    probe_acc_bn: float | None = None
    probe_loss_bn: float | None = None
    ece_bn: float | None = None
    bn_only: float | None = None
    eval_only: float | None = None
    classes: float | None = None
    label_classes: float | None = None  # the val probe's largest label + 1
    probe_size: float | None = None
    probe_size_train: float | None = None  # the images the train probe's pass saw
    bn_size: float | None = None
    bn_screen: float | None = None
    lr: float | None = None
    lr_initial: float | None = None
    weight_decay: float | None = None
    decay_per_step: float | None = None
    dropout: float | None = None
    bn_momentum: float | None = None
    momentum: float | None = None
    cyclic_lr: bool = False
    grad_clip: float | None = None
    clip_algorithm: str | None = None
    eps: float | None = None
    half_weights: bool = False
    warmup: bool = False
    hooked: tuple[str, ...] = ()
    lr_peak: float | None = None
    maximize: tuple[str, ...] = ()
    dampening: float | None = None
    lr_top: float | None = None
    lr_top_initial: float | None = None
    lr_default: float | None = None
    bn_nonfinite: tuple[str, ...] = ()  # BatchNorm layers whose running statistics hold NaN/Inf
    bn_initial: tuple[str, ...] = ()  # ... training ones whose statistics are as initialised
    run_share: float | None = None
    restd_acc: float | None = None  # the val probe's first images re-standardised (below)
    given_acc: float | None = None  # the same images as given
    restd_only: float | None = None  # right re-standardised only
    given_only: float | None = None  # right as given only
    restd_size: float | None = None
    noisy_acc: float | None = None  # the train probe with the val images' extra spread as noise
    clean_acc: float | None = None  # ... the same images as given
    noisy_only: float | None = None  # right with the noise only
    clean_only: float | None = None  # right as given only
    noisy_size: float | None = None
    ignored: list[int] | None = None
    recalls_val: list[float | None] | None = None  # each class's, val probe (None: too few)
    class_images_val: list[int] | None = None  # each class's images on the val probe
    recognised_bn: list[int] | None = None  # of those, recognised on batch statistics
    balanced_acc_val: float | None = None
    others_recall_val: float | None = None  # mean recall of the classes not left out
    swapped_val_share: float | None = None  # left-out images taken for another left-out class
    shift: int | None = None  # the offset c most val probe images are predicted as (true + c)
    shift_share: float | None = None  # the share of the val probe predicted so
    remap_share: float | None = None  # ... predicted one-to-one as other classes (label_map)
    taken_for: int | None = None
    ignored_share: float | None = None
    ignored_min_share: float | None = None  # the rarest left-out class's training share
    kept_min_share: float | None = None  # the rarest predicted class's
    taken_share: float | None = None
    top_share: float | None = None
    class_shares_train: list[float] | None = None  # each class's, as the training loader draws
    ignored_val_share: float | None = None
    missing: list[int] | None = None
    update_ratio: float | None = None  # the optimiser's last update / the weights' size
    weight_norm: float | None = None  # the norm of the weights it trains (``decay_rule``)
    resumed_at: int | None = None  # a fit resumed at this step without the monitor's history
    val_elsewhere: bool = False  # no validation batch reached the model: another module scored
    dropped_items: float | None = None  # never read: a fixed order's last part-batch dropped
    taken_val_share: float | None = None
    over_classes: int | None = None  # classes over 1.5x their val probe share in training
    split_classes: list[int] | None = None
    split_taken: list[int] | None = None
    val_only: list[int] | None = None  # val probe classes the train probe has no image of
    input_shift: dict[str, float] | None = None
    mild_shift: dict[str, float] | None = None
    loop_check: dict[str, float] | None = None
    val_labels_changed: float | None = None  # share of the first val batch's labels changed
    train_moved_at: int | None = None  # training items changed, read at this step (train_items)
    train_acc_images: float | None = None
    train_batch_images: float | None = None  # a full training batch's images
    val_images: float | None = None
    val_major: float | None = None  # the commonest class's share in the batches validated

    @property
    def gap_loss(self) -> float | None:
        """``val_loss - train_loss``."""
        return _minus(self.val_loss, self.train_loss)

    @property
    def gap_acc(self) -> float | None:
        """``train_acc - val_acc`` (positive when the model does better on what it trained on).

        A short last batch's train accuracy gives way to the train probe's, as in
        ``train_accuracy``; with no probe there is no gap to chart.

        Example::

            >>> short = dict(train_acc_images=2.0, train_batch_images=64.0)
            >>> Evaluation(0, 0, train_acc=1.0, val_acc=0.5, **short).gap_acc is None
            True
        """
        train = self.train_accuracy if self.short_batch_acc else self.train_acc
        return _minus(train, self.val_acc)

    @property
    def ece_gap(self) -> float | None:
        """``ece_val - ece_train``."""
        return _minus(self.ece_val, self.ece_train)

    @property
    def overconfidence_val(self) -> float | None:
        """Signed calibration of the val probe: mean confidence minus accuracy.

        Positive: over-confident; negative: under-confident.
        """
        return _minus(self.conf_val, self.probe_acc_val)

    @property
    def overconfidence_train(self) -> float | None:
        """Signed calibration of the train probe (mean confidence minus accuracy)."""
        return _minus(self.conf_train, self.probe_acc_train)

    @property
    def val_accuracy(self) -> float | None:
        """The logged val accuracy, else the val probe's."""
        return self.val_acc if self.val_acc is not None else self.probe_acc_val

    @property
    def train_accuracy(self) -> float | None:
        """The logged train accuracy, else the train probe's (eval mode).

        The train probe's too where the logged one is a short last batch's
        (``short_batch_acc``), and none where no probe ran: 2 images read 0, 50 or 100%.

        Example::

            >>> short = dict(train_acc_images=4.0, train_batch_images=64.0)
            >>> Evaluation(0, 0, train_acc=1.0, probe_acc_train=0.8, **short).train_accuracy
            0.8
            >>> Evaluation(0, 0, train_acc=1.0, **short).train_accuracy is None
            True
        """
        if self.train_acc is not None and not self.short_batch_acc:
            return self.train_acc
        return self.probe_acc_train

    @property
    def short_batch_acc(self) -> bool:
        """Whether the logged train accuracy is one short last batch's: under ``FEW_IMAGES``.

        Logged per step only, at an epoch's end it is the epoch's last batch's; 2500 images
        in batches of 64 leave 4 (held-out hunt 117: "train accuracy 100.0% vs 52.6% on
        validation" where the training images scored 82.5% in eval mode, 91% on batch
        statistics; another seed's "train 50.0%").
        """
        images, full = self.train_acc_images, self.train_batch_images
        return images is not None and full is not None and images < min(full, FEW_IMAGES)

    @property
    def bn_gap_acc(self) -> float | None:
        """Val probe accuracy with batch statistics minus in eval mode (running statistics).

        On the images the batch-statistics pass saw (``bn_size``, maybe the probe's first
        ones only): the shares right in one pass only, where counted, give it paired.
        """
        if self.bn_only is not None and self.eval_only is not None:
            return self.bn_only - self.eval_only
        return _minus(self.probe_acc_bn, self.probe_acc_val)

    @property
    def bn_eval_acc(self) -> float | None:
        """Eval-mode accuracy on the images the batch-statistics pass saw."""
        return _minus(self.probe_acc_bn, self.bn_gap_acc)

    @property
    def blind_pair(self) -> tuple[float, float] | None:
        """Real-valued targets: the blind loss and the outputs' own, the MSEs or the L1s.

        Whichever of the two the logged val loss is nearer (``None``: not read).
        """
        val, own, blind = self.val_loss, (self.probe_mse_val, self.probe_l1_val), (
            self.blind_mse, self.blind_l1)  # fmt: skip
        if any(v is None or not math.isfinite(v) or v <= 0 for v in (val, *own, *blind)):
            return None
        mse = abs(math.log(val / own[0])) <= abs(math.log(val / own[1]))  # type: ignore[operator]
        return (blind[0], own[0]) if mse else (blind[1], own[1])  # type: ignore[return-value]

    @property
    def blind_val_loss(self) -> float | None:
        """What predicting the same for every image scores, in the logged val loss's units.

        Example::

            >>> Evaluation(0, 0, val_loss=0.024, probe_mse_val=0.012, blind_mse=0.0093,
            ...            probe_l1_val=0.08, blind_l1=0.07).blind_val_loss  # an MSE x 2
            0.0186
        """
        pair = self.blind_pair
        return None if pair is None else round(pair[0] * self.val_loss / pair[1], 12)  # type: ignore[operator]


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
