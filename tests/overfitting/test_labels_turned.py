"""Training labels turned noisy during the run: told as memorisation, not unstable training."""

import pytest

from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.labels_turned import labels_turned
from lightning_cnnviz.overfitting.remedies import remedies

# hunt 61: 40% of the labels random from step 150 (validations every 25 steps): the train
# loss steps from 0.03 to 2.4, train accuracy 97% -> 44-72%, val accuracy 96% -> 88-80%
FIT = [(1.21, 0.84, 0.90), (0.27, 0.97, 0.92), (0.17, 1.0, 0.95), (0.09, 0.97, 0.95),
       (0.05, 1.0, 0.96), (0.03, 0.97, 0.96)]  # fmt: skip
NOISY = [(2.41, 0.44, 0.61), (1.80, 0.62, 0.88), (1.58, 0.5, 0.90), (1.56, 0.69, 0.90),
         (1.55, 0.56, 0.88), (1.40, 0.62, 0.89), (1.43, 0.56, 0.88), (1.41, 0.59, 0.89),
         (1.33, 0.72, 0.83)]  # fmt: skip


def told(rows):
    """Each problem the detector tells on ``rows`` of (train loss, train acc, val acc)."""
    detector, said = Detector(), []
    for i, (loss, train, val) in enumerate(rows):
        ev = Evaluation(25 * (i + 1), i // 4, train_loss=loss, train_acc=train, val_acc=val,
                        lr=1e-3, classes=10.0, val_images=1000.0)  # fmt: skip
        said += [(ev.step, c.verdict) for c in detector.update(ev) if c.change == "new"]
    return [(step, v) for step, v in said if v.severity == "problem"]


def test_labels_turned_is_told_as_memorisation_at_the_second_evaluation_after():
    problems = told([*FIT, *NOISY])
    assert [(step, v.kind) for step, v in problems] == [(200, "memorisation")]
    v = problems[0][1]
    assert v.figures["turned"] and v.since.step == 175 and v.best.step == 150
    words = headline(v)
    assert words.startswith("Training labels turned noisy since epoch 1 (step 175)")
    assert "stepped up from 0.03 (epoch 1 (step 150)) to 1.8" in words
    assert "train accuracy fell to 62.0%, below val accuracy (88.0%; 96.0% then)" in words
    assert remedies(v)[0].startswith("**Check the training labels**")


def test_labels_turned_not_where_val_accuracy_holds_or_the_loss_is_at_chance():
    # MixUp switched on: the train loss and train accuracy (against hard labels) fall
    # back, val accuracy holds: a harder target on purpose
    mixup = [(1.2, 0.55, 0.95), (1.1, 0.6, 0.96), (1.05, 0.62, 0.96), (1.0, 0.63, 0.96)]
    assert told([*FIT, *mixup]) == []
    # CutMix switched on (hunt 63): val accuracy holds, dips once (96% -> 90%), then back
    cutmix = [(1.2, 0.55, 0.95), (1.1, 0.6, 0.90), (1.05, 0.62, 0.96), (1.0, 0.63, 0.96)]
    assert told([*FIT, *cutmix]) == []
    # every label random: the loss at its chance level is not learning, not noisy labels
    random = [(2.31, 0.1, 0.8), (2.30, 0.11, 0.7), (2.30, 0.1, 0.6)]
    evs = [Evaluation(25 * (i + 1), 0, train_loss=loss, train_acc=t, val_acc=v, lr=1e-3,
                      classes=10.0, val_images=1000.0)
           for i, (loss, t, v) in enumerate([*FIT, *random])]  # fmt: skip
    assert labels_turned(evs) is None


# held-out hunt 125: a BatchNorm CNN under Adam 3e-3, 50% of the training labels wrong from
# step 128 (validations every 32 steps), its BatchNorm gap told a problem from step 160. Per
# evaluation: train loss, train acc, val acc, val loss, and the val probe in eval mode and
# with batch statistics (acc, loss), the shares right in one mode only (batch stats, eval)
BN_NOISY = [
    (1.832, 0.474, 0.228, 2.094, 0.219, 2.096, 0.727, 1.427, 0.516, 0.008),
    (1.181, 0.777, 0.612, 1.112, 0.617, 1.108, 0.844, 0.922, 0.242, 0.016),
    (0.743, 0.867, 0.656, 0.949, 0.734, 0.869, 0.914, 0.549, 0.211, 0.031),
    (0.471, 0.914, 0.748, 0.75, 0.742, 0.721, 0.93, 0.4, 0.211, 0.023),
    (2.256, 0.329, 0.61, 1.465, 0.625, 1.434, 0.773, 1.419, 0.195, 0.047),
    (2.011, 0.407, 0.672, 1.317, 0.703, 1.291, 0.867, 1.165, 0.18, 0.016),
]
BN_FIELDS = ("train_loss", "train_acc", "val_acc", "val_loss", "probe_acc_val", "probe_loss_val",
             "probe_acc_bn", "probe_loss_bn", "bn_only", "eval_only")  # fmt: skip


def told_with_bn(rows, momentum=0.1, detector=None):
    """Each (step, kind, severity) the detector tells first on ``BN_FIELDS`` ``rows``."""
    detector, said = detector or Detector(), []
    for i, row in enumerate(rows):
        figures = dict(zip(BN_FIELDS, row, strict=True))
        ev = Evaluation(32 * (i + 1), i, lr=3e-3, classes=10.0, val_images=500.0,
                        probe_size=128.0, bn_size=128.0, bn_momentum=momentum,
                        run_share=(i + 1) / 10, **figures)  # fmt: skip
        said += [(ev.step, c.verdict.kind, c.verdict.severity) for c in detector.update(ev)
                 if c.change == "new"]  # fmt: skip
    return said


def test_labels_turned_holds_the_batch_norm_gap_they_explain():
    detector = Detector()
    said = told_with_bn(BN_NOISY, detector=detector)
    # the labels at the second evaluation after they turned, not held by the BatchNorm gap
    assert (192, "memorisation", "problem") in said
    # ... and the gap the changed batches open is theirs: no "raise momentum" beside them,
    # also not at the first evaluation after, before the labels can be told
    assert [s for s in said if s[1] == "bn_mismatch" and s[2] == "problem"] == []
    assert [c.verdict.kind for c in detector.conclude()] == []  # nor at the end of fit
    v = detector.reported["memorisation"]
    assert (v.figures["bn_eval_acc"], v.figures["bn_batch_acc"]) == pytest.approx((0.703, 0.867))
    assert headline(v).endswith(
        "Eval mode trails batch statistics too (val probe 70.3% vs 86.7%): BatchNorm's running "
        "statistics follow the changed batches, so a larger BatchNorm `momentum` would not fix it."
    )


def test_labels_turned_leaves_a_lag_the_momentum_keeps_told():
    # the same run at a BatchNorm momentum of 0.001: its lag lasts whatever the data do
    said = told_with_bn(BN_NOISY, momentum=0.001)
    assert (192, "memorisation", "problem") in said
    assert [s[0] for s in said if s[1:] == ("bn_mismatch", "problem")] == [96]  # as before


def test_labels_turned_waits_on_batch_norm_where_batch_statistics_hold():
    # the same training figures, the val probe with batch statistics at its level before
    # (MixUp switched on: running statistics gathered on mixed images fail eval mode alone)
    held = [(*row[:6], 0.93, 0.4, *row[8:]) if i > 3 else row for i, row in enumerate(BN_NOISY)]
    assert [kind for _, kind, _ in told_with_bn(held) if kind == "memorisation"] == []
