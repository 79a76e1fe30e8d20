"""The detector on the training loss: weight decay holding it up, unstable training as it climbs."""

import dataclasses

import pytest

from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.remedies import remedies


def test_detector_weight_decay_too_strong_when_the_train_loss_climbs_back():
    # held out: AdamW weight_decay=20 at lr 1e-3 (2% a step) on a plain CNN; the train loss
    # went 0.73 -> 0.92 at a constant rate, val accuracy 85% -> 47%; "no problems found"
    rows = [(1.285, 0.566, 0.35), (0.891, 0.698, 0.59), (0.758, 0.808, 0.71),
            (0.730, 0.804, 0.76), (0.779, 0.850, 0.74), (0.873, 0.686, 0.64),
            (0.927, 0.706, 0.63), (0.916, 0.466, 0.62)]  # fmt: skip

    def run(wd, lr=1e-3, held=False):
        detector, said = Detector(), []
        for e, (train, val, train_acc) in enumerate(rows):
            ev = Evaluation(step=46 * (e + 1), epoch=e, train_loss=train, val_acc=val, lr=lr,
                            weight_decay=wd, decay_per_step=lr * wd,
                            train_acc=0.99 if held else train_acc)  # fmt: skip
            said += [(e, c.change, c.verdict) for c in detector.update(ev)]
        return detector, said

    detector, said = run(20.0)
    assert [(e, change) for e, change, _ in said] == [(6, "new")]  # twice 15% above its low
    verdict = said[0][2]
    assert (verdict.kind, verdict.best.epoch, verdict.since.epoch) == (
        "weight_decay_too_strong",
        3,
        4,
    )
    assert headline(verdict).startswith(
        "Weight decay too strong: 20 at learning rate 0.001 takes 2.0% off every weight each "
        "step, and the training loss has climbed back to 27% above its lowest"
    )
    assert remedies(verdict)[0].startswith("**Lower the weight decay** (10-100x)")
    assert detector.checks_ran()["weight decay"]
    assert run(5e-2)[1] == []  # a usual decay: the same curve says nothing of it
    # a BatchNorm net under the same decay: the loss climbs, train accuracy holds
    assert run(20.0, held=True)[1] == []


def test_detector_weight_decay_is_not_what_sent_a_learnt_loss_back_to_chance():
    # hunt 72: biases set to -20 by a callback at step 250 under SGD 0.05, momentum 0.9,
    # `weight_decay=0.02` (1% a step): the loss at ln 10 from 0.18, told as the decay's doing
    from lightning_cnnviz.overfitting import decay_rule

    def evs(after):
        losses = [1.2, 0.5, 0.3, 0.2, 0.18, *after]
        return [Evaluation(25 * (i + 1), i, train_loss=t, train_acc=0.95 if t < 1 else 0.1,
                           lr=0.05, weight_decay=0.02, decay_per_step=0.01, classes=10.0)
                for i, t in enumerate(losses)]  # fmt: skip

    assert decay_rule.decay_too_strong(evs([2.31, 2.30])) is None
    # the same decay undoing the model by degrees: told
    told = decay_rule.decay_too_strong(evs([0.6, 0.9]))
    assert told is not None and told.kind == "weight_decay_too_strong"


def test_detector_weight_decay_too_strong_when_the_train_loss_is_held_far_up():
    # hunt 19: AdamW lr 1e-3, weight_decay=50 (5% a step): train loss 2.12, 1.60, 1.44, 1.55
    # (61-66% val against 96%) with no low to climb back from; "no problems found"
    def run(wd, losses=(2.12, 1.60, 1.44, 1.55)):
        detector, said = Detector(), []
        for e, train in enumerate(losses):
            ev = Evaluation(step=47 * (e + 1), epoch=e, train_loss=train, train_acc=0.5,
                            val_acc=0.6, lr=1e-3, weight_decay=wd, decay_per_step=1e-3 * wd,
                            classes=10.0)  # fmt: skip
            said += [(e, c.change, c.verdict) for c in detector.update(ev)]
        return said

    ((e, change, verdict),) = run(50.0)
    assert (e, change, verdict.kind, verdict.severity) == (3, "new", "weight_decay_too_strong",
                                                           "problem")  # fmt: skip
    assert headline(verdict).startswith(
        "Weight decay too strong: 50 at learning rate 0.001 takes 5.0% off every weight each "
        "step, and the training loss has stayed at 1.55 since epoch 2"
    )
    assert "(67.3% of its chance level ln K = 2.303)" in headline(verdict)
    assert run(0.05) == []  # a usual decay: the same curve is for the other rules
    assert run(50.0, (2.1, 0.9, 0.5, 0.45)) == []  # fitting under it: a BatchNorm net


def test_detector_weight_decay_too_strong_as_an_adaptive_optimisers_l2():
    # hunt 49: Adam(weight_decay=1.0) held a GroupNorm CNN at 27% val (84% without it),
    # train loss 2.18, 2.10, 2.11 at three validations: "no problems found"; told at the
    # second (hunt 68: at the third, two validations after the onset at step 0)
    from lightning_cnnviz.overfitting.remedies import remedies

    def run(wd, losses=(2.18, 2.10, 2.106)):
        detector, said = Detector(), []
        for e, train in enumerate(losses):
            ev = Evaluation(step=125 * (e + 1), epoch=e, train_loss=train, train_acc=0.24,
                            val_acc=0.27, lr=1e-3, weight_decay=wd, classes=10.0)  # fmt: skip
            said += [(e, c.change, c.verdict) for c in detector.update(ev)]
        return said

    ((e, change, verdict),) = run(1.0)
    assert (e, change, verdict.kind) == (1, "new", "weight_decay_too_strong")
    assert headline(verdict).startswith(
        "Weight decay too strong: `weight_decay=1` in an adaptive optimiser (Adam, RMSprop) "
        "is L2 added to the gradient"
    )
    assert remedies(verdict)[0].startswith("**Lower the weight decay, or use AdamW**")
    assert "the model cannot fit the training data (train accuracy 24.0%" in headline(verdict)
    assert run(1e-4) == []  # a usual L2
    # a train accuracy far below val's (MixUp's mixed targets, hunt 50): no "cannot fit"
    mixed = dataclasses.replace(
        verdict, figures={**verdict.figures, "train_acc": 0.54, "val_acc": 0.8}
    )
    assert "cannot fit" not in headline(mixed) and "targets mixed or softened" in headline(mixed)


# measured (SGD lr 0.01, momentum 0.999, a plain digit CNN): the train loss between two
# validations fell to 0.25, then climbed 0.41, 0.63, 1.27; val accuracy 92% -> 66%
CLIMB = [(1.79, 0.47), (0.99, 0.76), (0.38, 0.90), (0.25, 0.93), (0.41, 0.92), (0.63, 0.90),
         (1.27, 0.89)]  # fmt: skip


CLIMB_VAL = [0.45, 0.74, 0.88, 0.91, 0.9, 0.8, 0.71, 0.9]  # falling once the loss climbs


def _climb_run(rows, lr=lambda e: 0.01, classes=10.0, val=CLIMB_VAL.__getitem__, **settings):
    """The detector's changes on ``rows`` of (train loss, train accuracy); ``val``: the val
    accuracy by evaluation."""
    detector, said = Detector(), []
    for e, (train, acc) in enumerate(rows):
        ev = Evaluation(step=32 * (e + 1), epoch=e, train_loss=train, train_acc=acc,
                        val_acc=val(e), lr=lr(e), classes=classes, **settings)  # fmt: skip
        said += [(e, c.change, c.verdict) for c in detector.update(ev)]
    return said


def test_detector_unstable_training_when_the_train_loss_climbs_at_the_same_rate():
    said = _climb_run(CLIMB, momentum=0.999)
    assert [(e, change, v.kind) for e, change, v in said] == [
        (5, "new", "unstable_training"),
        (6, "worse", "unstable_training"),
    ]
    verdict = said[0][2]
    assert (verdict.best.epoch, verdict.since.epoch) == (3, 4)
    assert verdict.figures["rise"] == pytest.approx(0.63 / 0.25 - 1)
    text = headline(verdict)
    assert text.startswith(
        "Training unstable: the training loss has climbed back to 2.52 times its lowest since"
    )
    assert "train accuracy 93.0% -> 90.0%" in text and "The momentum is 0.999" in text
    assert remedies(verdict)[0].startswith("**Lower the momentum** to 0.9 (it is 0.999;")
    plain = _climb_run(CLIMB, momentum=0.9)[0][2]
    assert "momentum" not in headline(plain)
    assert remedies(plain)[0].startswith("**Lower the learning rate** (3-10x)")
    # back within 15% of its lowest: the note that it went away
    back = _climb_run([*CLIMB, (0.27, 0.93)], momentum=0.9)
    assert [(e, change) for e, change, _ in back] == [(5, "new"), (6, "worse"), (7, "gone")]


def test_detector_unstable_training_where_the_val_accuracy_pays_for_the_climb():
    # hunt 29: a gradient-reversal layer, Adam 1e-3 unchanged: the train loss 0.38 -> 0.52
    # -> 0.7, train accuracy down 3-4 points only, val accuracy 87% -> 75.5%
    grl = [(1.4, 0.6), (0.6, 0.82), (0.38, 0.853), (0.52, 0.826), (0.7, 0.812)]  # not doubled
    val = [0.7, 0.84, 0.87, 0.80, 0.755].__getitem__
    told = _climb_run(grl, val=val, lr=lambda e: 0.001, val_images=1000.0)
    assert [(e, v.kind) for e, _, v in told] == [(4, "unstable_training")]
    assert "a gradient-reversal layer" in headline(told[0][2])
    # the same fall on a val set of 60 images is within its noise (3 standard errors)
    assert _climb_run(grl, val=val, lr=lambda e: 0.001, val_images=60.0) == []


def test_detector_unstable_training_quiet_where_the_climb_is_a_schedule_or_noise():
    # a warm restart raised the rate: the schedule's doing
    assert _climb_run(CLIMB, lr=lambda e: 0.01 if e < 4 else 0.05) == []
    # ... also where the evaluation of the lowest loss reads the raised rate: its loss was
    # reached at the rate before (held out: 1e-3 raised 30x at that very evaluation)
    assert _climb_run(CLIMB, lr=lambda e: 0.001 if e < 3 else 0.03) == []
    # late in a run near zero: 0.01 -> 0.03 is a few hard batches (under 5% of ln 10)
    tiny = [(1.2, 0.6), (0.3, 0.9), (0.05, 0.98), (0.01, 1.0), (0.025, 0.995), (0.03, 0.995)]
    assert _climb_run(tiny) == []
    # 1.4x with the accuracy held: no harm done
    held = [(1.2, 0.6), (0.5, 0.85), (0.3, 0.9), (0.42, 0.9), (0.42, 0.89)]
    assert _climb_run(held) == []
    # the same climb with the accuracy 5 points down is one
    fell = [(1.2, 0.6), (0.5, 0.85), (0.3, 0.9), (0.42, 0.86), (0.42, 0.84)]
    fell_val = [a - 0.02 for _, a in fell].__getitem__  # the val accuracy falls with it
    assert [v.kind for _, _, v in _climb_run(fell, val=fell_val)] == ["unstable_training"]
    # a decay of 2% a step names the decay instead
    decayed = _climb_run(CLIMB, weight_decay=2.0, decay_per_step=0.02)
    assert [v.kind for _, _, v in decayed][:1] == ["weight_decay_too_strong"]
    # no class count (a regression): the doubling and the accuracy's fall both needed
    assert _climb_run(CLIMB, classes=None) == []
    # hunt 19: label smoothing (or CutMix) switched on at epoch 4: the train loss climbs
    # 0.29 -> 1.03, the val accuracy holds or rises: a harder target, nothing undone
    smoothed = [(1.2, 0.6), (0.5, 0.85), (0.29, 0.91), (1.19, 0.95), (1.03, 0.97), (1.0, 0.97)]
    assert _climb_run(smoothed, val=lambda e: min(0.95, 0.9 + 0.02 * e)) == []
    assert [v.kind for _, _, v in _climb_run(smoothed)] == ["unstable_training"]
    # hunt 19: training images blanked from epoch 3: the train loss exactly at ln 10, train
    # accuracy at chance; the batches lost the label (the divergence finding says so)
    blank = [(1.2, 0.6), (0.5, 0.85), (0.29, 0.91), (2.303, 0.1), (2.302, 0.1), (2.303, 0.1)]
    assert _climb_run(blank) == []
    # hunt 23: half the labels random from epoch 4: train accuracy 90% -> 46%, val 88% -> 82%
    # (a dip, then 92%): the training batches got harder, nothing the rate undid
    noisy = [(1.4, 0.42), (0.62, 0.73), (0.43, 0.85), (0.35, 0.9), (1.3, 0.9), (1.96, 0.46)]
    noisy += [(1.9, 0.46)]
    noisy_val = [0.62, 0.82, 0.88, 0.88, 0.81, 0.82, 0.88].__getitem__
    said = _climb_run(noisy, val=noisy_val, lr=lambda e: 0.001)  # ... told as noisy labels
    assert [(v.kind, v.figures.get("turned")) for _, _, v in said] == [("memorisation", True)]
    # hunt 23: labels permuted from epoch 4: val accuracy far below chance is the labels'
    permuted = [0.62, 0.82, 0.88, 0.88, 0.05, 0.017, 0.01].__getitem__
    climb = [(1.4, 0.42), (0.62, 0.73), (0.43, 0.85), (0.25, 0.92), (0.9, 0.5), (0.79, 0.82)]
    told = _climb_run([*climb, (0.7, 0.85)], val=permuted, lr=lambda e: 0.001)
    assert "unstable_training" not in {v.kind for _, _, v in told}
    (gap,) = [v for _, _, v in told if v.kind == "generalisation_gap"][:1]  # the labels'
    assert "(below chance: the model gives the val images other classes" in headline(gap)
    assert "within chance" not in headline(gap)
    # the same climb with val accuracy falling alike is the updates'
    alike = [a - 0.02 for _, a in noisy].__getitem__
    assert [v.kind for _, _, v in _climb_run(noisy, val=alike, lr=lambda e: 0.001)][:1] == [
        "unstable_training"
    ]


@pytest.mark.parametrize(
    ("losses", "told"),
    [
        ([1.35, 0.92, 0.81, 0.86, 0.84], True),  # hunt 25: AdamW wd=20, plain CNN, 75-83% val
        ([0.60, 0.31, 0.25, 0.28, 0.27], False),  # the same decay on a BatchNorm net
        ([1.35, 0.92, 0.81, 0.70, 0.62], False),  # still falling
    ],
)
def test_detector_weight_decay_holding_the_train_loss_back(losses, told):
    from lightning_cnnviz.overfitting import decay_rule

    evs = [Evaluation(32 * (i + 1), i, train_loss=t, lr=1e-3, weight_decay=20.0,
                      decay_per_step=0.02, classes=10.0) for i, t in enumerate(losses)]  # fmt: skip
    verdict = decay_rule.decay_too_strong(evs)
    assert (verdict is not None) == told
    if told:
        assert verdict.figures["held_back"] and verdict.figures["train_loss"] == 0.84


def test_unstable_accuracy_fall_read_past_one_batch_s_noise_and_stale_eval_mode():
    # hunt 92: a timm resnet10t (BatchNorm momentum 0.02) validated every 8 steps, told
    # "training unstable ... train accuracy 90.6% -> 81.2%" (29/32 -> 26/32 images) while
    # eval mode read the lagging running statistics; 90% val at the end
    from lightning_cnnviz.overfitting.evaluation import Evaluation
    from lightning_cnnviz.overfitting.loss_climb import acc_fell

    best = Evaluation(126, 1, train_acc=0.906, train_acc_images=32.0)
    now = Evaluation(134, 1, train_acc=0.812, train_acc_images=32.0)
    assert acc_fell(best, now) is False
    assert acc_fell(Evaluation(126, 1, train_acc=0.906), Evaluation(134, 1, train_acc=0.812))
    val = dict(val_images=300, probe_size=128.0)
    fell = Evaluation(134, 1, val_acc=0.27, probe_acc_val=0.27, probe_acc_bn=0.9, **val)
    assert not acc_fell(Evaluation(126, 1, val_acc=0.5, **val), fell)  # stale: eval mode
    assert acc_fell(Evaluation(126, 1, val_acc=0.5, **val), Evaluation(134, 1, val_acc=0.27, **val))


def test_detector_train_loss_climb_with_the_val_probe_held_on_batch_statistics_is_no_instability():
    # hunt 93: noise and shifts switched on in `training_step` of a BN CNN at step 140 (the
    # rate unchanged): eval-mode val 93% -> 70-82% (BatchNorm's running statistics now
    # describe noisy inputs), the val probe on batch statistics 89-95%; told "the updates
    # have grown too large" to the end
    rows = [(116, 0.188, 0.969, 0.939, None), (127, 0.164, 1.0, 0.934, None),
            (138, 0.171, 0.9375, 0.934, None), (152, 1.51, 0.25, 0.823, 0.852),
            (163, 1.54, 0.797, 0.727, 0.945), (174, 1.098, 0.734, 0.706, 0.953)]  # fmt: skip

    def evs(bn_of):
        return [
            Evaluation(s, i, train_loss=tl, train_acc=ta, val_acc=va, probe_acc_bn=bn_of(bn),
                       classes=10.0, lr=1e-3)
            for i, (s, tl, ta, va, bn) in enumerate(rows)
        ]  # fmt: skip

    detector = Detector(patience=2)
    said = [c.verdict.kind for e in evs(lambda bn: bn) for c in detector.update(e)]
    assert "unstable_training" not in said
    # the val probe lost as much on batch statistics: the weights were undone
    detector = Detector(patience=2)
    said = [c.verdict.kind for e in evs(lambda bn: bn and bn - 0.25) for c in detector.update(e)]
    assert "unstable_training" in said
