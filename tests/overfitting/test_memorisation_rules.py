"""The memorisation rule on synthetic series: val accuracy falling while train accuracy climbs."""

import math
import random
from dataclasses import replace

import pytest

from lightning_cnnviz.overfitting import memorisation, rules
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from tests.overfitting.series import TRAIN, first, run


def test_rules_memorisation_told_apart_from_overfitting():
    # noisy labels: val acc peaks at epoch 4 then falls ~25 points while train acc climbs;
    # val loss still falls (the model is unsure, not over-confident)
    val_acc = [0.6, 0.8, 0.9, 0.93, 0.95, 0.9, 0.84, 0.78, 0.72, 0.7]
    train_acc = [0.5, 0.7, 0.8, 0.85, 0.88, 0.92, 0.95, 0.97, 0.99, 0.995]
    val_loss = [1.5, 1.0, 0.8, 0.7, 0.65, 0.62, 0.6, 0.59, 0.58, 0.57]
    evs = run(val_acc=val_acc, train_acc=train_acc, val_loss=val_loss, train_loss=TRAIN[:10])
    verdict = first(memorisation.memorisation, evs)
    assert verdict.kind == "memorisation" and verdict.best.epoch == 4
    # a 5-point fall is within what the steep start makes the rule read as noise (margin
    # twice the local noise, 4.8 points, on the mean of the last two falls); the 11-point
    # fall one validation later is not. Val loss falls: no agreement to lower the bar
    assert verdict.since.epoch == 5 and verdict.detected.epoch == 7
    assert verdict.figures["margin"] == pytest.approx(0.0484, abs=1e-3)
    assert verdict.figures["drop"] == pytest.approx(0.17)
    assert verdict.figures["train_acc"] == pytest.approx(0.97)
    # hunt 21: 120 clean volumes were told "(noisy or wrong labels?)" alone
    assert "or too few training images to learn the classes from?" in headline(verdict)
    assert first(rules.overfitting, evs) is None  # val loss never rose
    # plain overfitting: val loss rises, val acc holds (small noise): no memorisation
    rng = random.Random(0)
    flat_acc = [
        min(0.99, 0.9 + 0.02 * i) if i < 4 else 0.97 + rng.gauss(0, 0.003) for i in range(12)
    ]
    evs = run(val_acc=flat_acc, train_acc=[0.9 + 0.008 * i for i in range(12)])
    assert first(memorisation.memorisation, evs) is None


def test_rules_memorisation_reads_no_accuracy_from_an_embedding_s_argmax():
    # hunt 101: a triplet-loss embedding (32 wide, labels 0-9, no accuracy logged) had its
    # argmax read as val and train accuracies, as the overfitting rule did
    val_acc = [0.6, 0.8, 0.9, 0.93, 0.95, 0.9, 0.84, 0.78, 0.72, 0.7]
    train_acc = [0.5, 0.7, 0.8, 0.85, 0.88, 0.92, 0.95, 0.97, 0.99, 0.995]
    val_loss = [1.5, 1.0, 0.8, 0.7, 0.65, 0.62, 0.6, 0.59, 0.58, 0.57]
    evs = run(val_acc=val_acc, train_acc=train_acc, val_loss=val_loss, train_loss=TRAIN[:10])
    embedded = [replace(e, probe_acc_val=e.val_acc, val_acc=None, probe_acc_train=e.train_acc,
                        train_acc=None, classes=32.0, label_classes=10.0, probe_size=128.0,
                        probe_outside_val=0.7, returned_loss=0.05, probe_loss_val=3.6)
                for e in evs]  # fmt: skip
    assert first(memorisation.memorisation, embedded) is None
    classed = [replace(e, returned_loss=3.5) for e in embedded]  # their cross-entropy trained
    assert first(memorisation.memorisation, classed).kind == "memorisation"


def test_rules_memorisation_on_a_real_noisy_label_run():
    # reference CNN, Adam 1e-3, 2000 MNIST digits with half their labels random: val
    # accuracy peaks at epoch 6; train accuracy (against the noisy labels) climbs slowly
    # and passes val accuracy only at epoch 17
    val_acc = [0.801, 0.873, 0.882, 0.886, 0.897, 0.903, 0.919, 0.901, 0.874, 0.844, 0.848,
               0.845, 0.814, 0.755, 0.765, 0.748, 0.734, 0.72, 0.65, 0.694]  # fmt: skip
    train_acc = [0.305, 0.465, 0.493, 0.511, 0.518, 0.522, 0.534, 0.545, 0.553, 0.563, 0.575,
                 0.6, 0.614, 0.635, 0.659, 0.691, 0.721, 0.748, 0.769, 0.808]  # fmt: skip
    verdict = first(memorisation.memorisation, run(val_acc=val_acc, train_acc=train_acc))
    assert (verdict.best.epoch, verdict.since.epoch, verdict.detected.epoch) == (6, 7, 8)
    assert verdict.figures["drop"] == pytest.approx(0.045)


def test_rules_memorisation_one_batch_train_accuracy_climb_is_batch_noise():
    # h_small_val s0: a healthy BN CNN validated every quarter epoch on 150 images; mid-epoch
    # the logged train accuracy is the latest batch's (64 images): 63/64 at the val peak,
    # 64/64 at the end, while val accuracy wiggled 97.3% -> 92.7% (7 of 150 images)
    val_acc = [0.90, 0.93, 0.944, 0.929, 0.944, 0.959, 0.973, 0.953, 0.933, 0.927]
    train_acc = [0.9, 0.94, 0.95, 0.969, 0.953, 0.969, 0.984, 0.984, 0.969, 1.0]
    val_loss = [0.3, 0.22, 0.2, 0.24, 0.19, 0.15, 0.1, 0.14, 0.2, 0.22]
    columns = dict(val_acc=val_acc, train_acc=train_acc, val_loss=val_loss)
    told = first(memorisation.memorisation, run(**columns))  # read as epoch-mean accuracies: told
    assert told is not None and told.best.epoch == 6
    batch = run(**columns, train_acc_images=[64.0] * 10, val_images=[150.0] * 10)
    assert first(memorisation.memorisation, batch) is None
    # each reading alone: the 150-image val set's binomial error lifts the drop's floor
    assert memorisation._drop_error(batch) == pytest.approx(
        1.5 * math.sqrt(2 * 0.973 * 0.027 / 150)
    )
    assert memorisation._drop_error(run(val_acc=val_acc, val_images=[2000.0] * 10)) < 0.02
    assert first(memorisation.memorisation, run(**columns, val_images=[150.0] * 10)) is not None
    # a real climb read from one batch is still one: 70% -> 95% of 64 images
    now = Evaluation(90, 0, train_acc=0.95, train_acc_images=64.0)
    assert (
        memorisation.train_acc_error(now, Evaluation(60, 0, train_acc=0.7, train_acc_images=64.0))
        < 0.2
    )


def test_rules_memorisation_one_image_of_a_fixed_train_probe_is_no_climb():
    # hunt 56: a healthy CNN validated every 5 steps on 1000 images, no train accuracy
    # logged: its 32-image train probe went 31/32 -> 32/32 while val accuracy fell 2.3
    # points off a single high (a new high 93.7% came one validation later)
    val_acc = [0.897, 0.905, 0.903, 0.905, 0.905, 0.903, 0.925, 0.923, 0.931, 0.909, 0.908]
    probe = [0.938, 0.969, 0.938, 0.906, 0.969, 0.969, 0.938, 0.969, 0.969, 0.969, 1.0]
    val_loss = [0.57, 0.56, 0.55, 0.52, 0.49, 0.5, 0.5, 0.51, 0.48, 0.49, 0.51]
    columns = dict(val_acc=val_acc, probe_acc_train=probe, val_loss=val_loss)
    sized = dict(val_images=[1000.0] * 11, probe_size_train=[32.0] * 11)
    assert first(memorisation.memorisation, run(**columns, val_images=[1000.0] * 11)) is not None
    assert first(memorisation.memorisation, run(**columns, **sized)) is None
    # a climb of 4 of the probe's images or more is one (McNemar: 2 standard errors)
    climbed = [*probe[:8], 27 / 32, 29 / 32, 31 / 32]  # 27/32 at the val peak, 31/32 now
    assert first(memorisation.memorisation, run(**dict(columns, probe_acc_train=climbed), **sized))


def test_rules_memorisation_needs_train_accuracy_climbing():
    val_acc = [0.6, 0.8, 0.9, 0.8, 0.7, 0.6]
    train_acc = [0.6, 0.75, 0.85, 0.75, 0.65, 0.55]  # both fall: a collapse, not memorising
    assert first(memorisation.memorisation, run(val_acc=val_acc, train_acc=train_acc)) is None


def test_rules_memorisation_quiet_where_train_accuracy_stopped_climbing_after_the_first():
    # hunt 49: weight decay 0.1 under SGD held the model at 85% (98% without it); the peak
    # at the first validation, whose train accuracy was the first epoch's mean (75%), and
    # train accuracy down since: told as memorisation with train and val both at 85%
    columns = dict(val_acc=[0.889, 0.859, 0.85], val_loss=[0.386, 0.509, 0.498])
    held = run(**columns, train_acc=[0.745, 0.864, 0.853])
    assert first(memorisation.memorisation, held) is None
    # ...still climbing at the latest validation: told
    climbing = run(**columns, train_acc=[0.745, 0.864, 0.88])
    assert first(memorisation.memorisation, climbing).best.epoch == 0
    # ...or read twice from one epoch's mean (validated every half epoch): no fall
    stale = run(**columns, train_acc=[0.745, 0.864, 0.864])
    assert first(memorisation.memorisation, stale).best.epoch == 0


def test_rules_memorisation_quiet_on_a_first_validation_peak_while_val_loss_falls():
    # held out (hunt 18): 99.0% at the first validation, then 96.3% and 95.8% while the
    # train accuracy's epoch mean climbed 84% -> 99% and the val loss fell 0.42 -> 0.17
    columns = dict(val_acc=[0.99, 0.963, 0.958], train_acc=[0.843, 0.991, 0.994])
    assert first(memorisation.memorisation, run(**columns, val_loss=[0.42, 0.23, 0.167])) is None
    # the same accuracies with the val loss up from its low: told
    verdict = first(memorisation.memorisation, run(**columns, val_loss=[0.42, 0.23, 0.25]))
    assert (verdict.best.epoch, verdict.detected.epoch) == (0, 2)


def test_rules_memorisation_quiet_while_the_val_loss_reaches_new_lows_since_the_peak():
    # held out (hunt 66): a 3-class net validated every 5 steps, its classes trading places:
    # val accuracy 79.4% -> 68.8% -> 65.1% while the val loss went 0.485 -> 0.482 -> 0.477
    # (new lows) and train accuracy climbed: told "noisy or wrong labels"; it ended at 97.7%
    val_acc = [0.367, 0.326, 0.633, 0.633, 0.693, 0.642, 0.67, 0.647, 0.67, 0.711, 0.794, 0.688,
               0.651]  # fmt: skip
    val_loss = [1.168, 1.062, 0.952, 0.747, 0.605, 0.569, 0.52, 0.592, 0.508, 0.571, 0.485,
                0.482, 0.477]  # fmt: skip
    train_acc = [0.4, 0.35, 0.6, 0.65, 0.7, 0.7, 0.72, 0.7, 0.75, 0.78, 0.8, 0.86, 0.906]
    recalls = [[0.9, 0.9, 0.3]] * 10 + [[0.88, 0.98, 0.55], [0.0, 0.98, 1.0], [0.95, 0.98, 0.0]]
    columns = dict(val_acc=val_acc, train_acc=train_acc, val_images=[218.0] * 13,
                   recalls_val=recalls)  # fmt: skip
    assert first(memorisation.memorisation, run(**columns, val_loss=val_loss)) is None
    # ... classes trading places: the same curves with every class falling are memorisation
    falling = [*recalls[:10], [0.88, 0.98, 0.55], [0.8, 0.9, 0.5], [0.75, 0.85, 0.4]]
    verdict = first(memorisation.memorisation, run(**columns | {"recalls_val": falling},
                                                   val_loss=val_loss))  # fmt: skip
    assert verdict is not None and verdict.best.val_accuracy == 0.794
    # the same accuracies with the val loss up from its low since the peak: told
    up = [*val_loss[:-2], 0.49, 0.51]
    verdict = first(memorisation.memorisation, run(**columns, val_loss=up))
    assert verdict is not None and verdict.best.val_accuracy == 0.794
