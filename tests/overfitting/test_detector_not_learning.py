"""The detector's not-learning and gap findings: at chance, ended by learning, settings named."""

import dataclasses

import pytest

from lightning_cnnviz.overfitting import levels
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.remedies import remedies
from lightning_cnnviz.overfitting.text import calibration_text, diagnosis_text
from tests.overfitting import series


def test_detector_eval_mode_at_chance_with_batchnorm_broken_is_no_not_learning():
    # a Conv1d net whose running statistics lag (held out): eval mode at 20%, batch
    # statistics 100%, 5 classes: BatchNorm, not a model that learns nothing
    detector, kinds = Detector(), []
    for e in range(4):
        ev = Evaluation(step=47 * (e + 1), epoch=e, val_acc=0.2, val_loss=3.0, train_acc=0.99,
                        train_loss=0.05, probe_acc_val=0.2, probe_loss_val=3.0,
                        probe_acc_bn=1.0, probe_loss_bn=0.01, probe_size=128.0, classes=5.0,
                        bn_only=0.8, eval_only=0.0)  # fmt: skip
        kinds += [c.verdict.kind for c in detector.update(ev)]
    assert kinds == ["bn_mismatch"]


def test_detector_not_learning_ends_once_batch_statistics_show_learning():
    # a torchvision MNASNet (BatchNorm momentum 3e-4, held out): eval mode predicts one
    # class throughout while the probe with batch statistics climbs 30% -> 55%
    detector, said = Detector(), []
    for e, bn_acc in enumerate([0.30, 0.30, 0.38, 0.55]):
        ev = Evaluation(step=62 * (e + 1), epoch=e, val_acc=0.29, val_loss=1.45,
                        train_acc=0.33 + 0.05 * e, train_loss=1.5, probe_acc_val=0.25,
                        probe_loss_val=1.45, probe_acc_bn=bn_acc, probe_loss_bn=1.4,
                        probe_size=128.0, bn_size=96.0, classes=4.0,
                        bn_only=bn_acc - 0.2, eval_only=0.05)  # fmt: skip
        said += [(e, c.change, c.verdict.kind, headline(c.verdict)) for c in detector.update(ev)]
    assert [s[:3] for s in said] == [(1, "new", "not_learning"), (3, "gone", "not_learning")]
    reach = "with batch statistics the same probe reaches 55.0% at epoch 3 (eval mode 25.0%)"
    assert reach in said[1][3]
    assert said[1][3].endswith("BatchNorm's running statistics do not match its batches "
                               "(`bn_mismatch`).")  # fmt: skip
    (note,) = [v for v in detector.reported.values() if v.kind == "not_learning"]
    assert note.severity == "note"


def test_detector_not_learning_after_divergence_leaves_out_a_nan_calibration():
    # SGD 2.0 diverged (a hunt's run): the val probe's outputs are NaN, its accuracy 10.2%;
    # the entry said "under-confident ... mean confidence nan at 10.2% accuracy (+nan)"
    nan = float("nan")
    detector, found = Detector(), []
    for e in range(3):
        ev = Evaluation(
            step=10 * (e + 1), epoch=e, train_loss=nan, val_loss=nan, conf_val=nan,
            probe_acc_val=0.102, probe_loss_val=nan, classes=10, probe_size=128, ece_val=nan,
        )  # fmt: skip
        found += [c.verdict for c in detector.update(ev)]
    assert [v.kind for v in found] == ["not_learning"]
    assert calibration_text(ev) == "calibration: n/a (the probe's outputs are not finite)"
    text = diagnosis_text(detector.active, ev)
    assert "outputs are not finite" in text
    assert "confidence nan" not in text and "+nan" not in text and "ECE" not in text
    assert "confident" not in text and "Calibration" not in text


def _shifted(e, train_acc, probe_train):
    # val images colour-inverted (held out): val at chance, training images learnt
    return Evaluation(step=46 * (e + 1), epoch=e, val_acc=0.12, val_loss=9.0, train_acc=train_acc,
                      train_loss=0.9, probe_acc_val=0.12, probe_loss_val=9.0,
                      probe_acc_train=probe_train, probe_size=128.0, classes=10.0)  # fmt: skip


def test_detector_val_at_chance_while_the_train_probe_learns_is_a_gap_not_not_learning():
    # the logged train accuracy is the first epoch's mean (35.7%), the train probe reads 72.7%
    detector, changes = Detector(), []
    for e, (logged, probe) in enumerate([(0.357, 0.727), (0.8, None), (0.9, None)]):
        changes += [(c.change, c.verdict.kind) for c in detector.update(_shifted(e, logged, probe))]
    assert changes[0] == ("new", "generalisation_gap") and {k for _, k in changes} == {
        "generalisation_gap"
    }  # then worse as the train accuracy climbs


def test_detector_gap_told_while_the_rising_val_curve_waits_at_chance():
    # val labels mapped differently (held out): val below chance, its loss rising 2.5 -> 11
    detector, changes = Detector(), []
    curve = [(0.18, 0.20, 2.5, 2.2), (0.53, 0.35, 5.5, 1.5), (0.81, 0.92, 8.5, 0.66),
             (0.88, 0.85, 10.9, 0.36), (0.91, 0.92, 10.8, 0.29)]  # fmt: skip
    for e, (train, probe, val_loss, train_loss) in enumerate(curve):
        ev = Evaluation(step=23 * (e + 1), epoch=e, val_acc=0.02, val_loss=val_loss,
                        train_acc=train, train_loss=train_loss, probe_acc_val=0.02,
                        probe_loss_val=val_loss, probe_acc_train=probe, probe_size=128.0,
                        classes=10.0)  # fmt: skip
        changes += [(c.change, c.verdict.kind, ev.step) for c in detector.update(ev)]
    assert ("new", "generalisation_gap", 69) in changes
    assert not {"overfitting", "memorisation"} & {k for _, k, _ in changes}  # not at chance


def test_detector_not_learning_turns_into_a_note_once_training_images_are_learnt():
    detector, said = Detector(), []
    for e, (logged, probe) in enumerate([(0.15, 0.2), (0.2, 0.25), (0.9, 0.93), (0.95, None)]):
        for c in detector.update(_shifted(e, logged, probe)):
            said.append((e, c.change, c.verdict.kind, headline(c.verdict)))
    assert [s[:3] for s in said] == [(1, "new", "not_learning"), (2, "gone", "not_learning"),
                                     (3, "new", "generalisation_gap")]  # fmt: skip
    assert "training images are learnt at epoch 2 (train 90.0%, train probe 93.0%)" in said[1][3]


def test_detector_not_learning_ended_by_training_images_stays_ended_through_their_noise():
    # random training labels (held out): the train probe climbs past the bar (55%: 10
    # classes), then reads just under it while val stays at chance
    detector, said = Detector(), []
    for e, (logged, probe) in enumerate([(0.1, 0.1), (0.1, 0.11), (0.43, 0.552), (0.46, 0.54),
                                         (0.5, 0.547), (0.54, 0.6)]):  # fmt: skip
        said += [(e, c.change, c.verdict.kind) for c in detector.update(_shifted(e, logged, probe))]
    assert [s for s in said if s[2] == "not_learning"] == [(1, "new", "not_learning"),
                                                           (2, "gone", "not_learning")]  # fmt: skip
    # a real collapse of the training images brings it back
    said = [(c.change, c.verdict.kind) for c in detector.update(_shifted(6, 0.12, 0.1))]
    said += [(c.change, c.verdict.kind) for c in detector.update(_shifted(7, 0.11, 0.1))]
    assert ("new", "not_learning") in said


def test_detector_gap_with_val_never_above_chance_asks_to_check_the_training_labels():
    # random training labels (held out): val at chance at every validation
    detector, told = Detector(), {}
    for e, (logged, probe) in enumerate([(0.1, 0.1), (0.3, 0.35), (0.6, 0.62), (0.7, 0.75)]):
        told |= {
            c.verdict.kind: headline(c.verdict) for c in detector.update(_shifted(e, logged, probe))
        }
    gap = told["generalisation_gap"]
    assert "check that each label belongs to its image, in both splits" in gap
    # val above chance once (the labels carry over), then the gap: no such hint
    detector, told = Detector(), {}
    learnt = Evaluation(step=23, epoch=0, val_acc=0.6, val_loss=1.2, train_acc=0.6, train_loss=1.1,
                        probe_acc_val=0.6, probe_loss_val=1.2, probe_acc_train=0.6,
                        probe_size=128.0, classes=10.0)  # fmt: skip
    detector.update(learnt)
    for e, (logged, probe) in enumerate([(0.7, 0.75), (0.8, 0.85), (0.9, 0.9)], start=1):
        told |= {
            c.verdict.kind: headline(c.verdict) for c in detector.update(_shifted(e, logged, probe))
        }
    assert "check that each training label" not in told["generalisation_gap"]


@pytest.mark.parametrize(
    ("settings", "first"),
    [
        ({"lr": 5e-4, "lr_initial": 0.05}, "**Raise the learning rate**: it is 0.0005 now, 100x"),
        ({"lr": 1e-3, "weight_decay": 50.0, "decay_per_step": 0.05},
         "**Lower the weight decay**: 50 at learning rate 0.001 takes 5.0% off"),
        ({"lr": 1e-3, "weight_decay": 1.0},  # Adam's L2 (hunt 24: 37% -> chance)
         "**Lower the weight decay, or use AdamW**: `weight_decay=1` in an adaptive"),
        ({"lr": 1e-3, "weight_decay": 1e-4}, "**Try another learning rate**: 10x lower if"),
        ({"lr": 1e-3, "dropout": 0.9}, "**Lower the dropout** (p = 0.9)"),
        ({"lr": 0.05, "grad_clip": 1e-4}, "**Raise the gradient clipping threshold**: `gradient_"),
        ({"lr": 1e-3, "grad_clip": 1.0}, "**Try another learning rate**: 10x lower if the loss"),
        ({"lr": 0.5, "train_loss": 3.1}, "**Lower the learning rate** (by 10x): the training loss"),
        ({"lr": 1e-3}, "**Try another learning rate**: 10x lower if the loss jumps"),
    ],
)  # fmt: skip
def test_detector_not_learning_remedies_follow_the_runs_settings(settings, first):
    detector, found = Detector(), []
    for e in range(2):
        at_chance = {"probe_acc_val": 0.1, "probe_loss_val": 2.3, "probe_size": 128.0}
        figures = {"train_loss": 2.3, "classes": 10.0, **at_chance, **settings}
        ev = Evaluation(step=46 * (e + 1), epoch=e, **figures)
        found += [c.verdict for c in detector.update(ev)]
    (verdict,) = found
    assert remedies(verdict)[0].startswith(first)
    assert "1. " + first in diagnosis_text([verdict], verdict.detected)
    # a rate cut 10x or more before anything was learnt is said in the headline too (held
    # out: a per-epoch decay stepped per batch, named in the remedies only)
    cut = settings.get("lr_initial") is not None
    assert ("The learning rate is 0.0005 now, 100x below its start (0.05)." in headline(
        verdict)) is cut  # fmt: skip


def test_detector_not_learning_after_a_collapse_names_a_rate_the_schedule_raised():
    # held out: a linear warmup to 1.5 (meant 0.015) took a CNN from 55.5% to chance, no NaN
    detector, found = Detector(), []
    rows = [(0.40, 1.9, 0.051), (0.555, 1.3, 0.099), (0.1, 2.3, 0.15), (0.1, 2.3, 0.199)]
    for e, (acc, loss, lr) in enumerate(rows):
        ev = Evaluation(step=23 * (e + 1), epoch=e // 2, probe_acc_val=acc, probe_loss_val=loss,
                        probe_size=128.0, classes=10.0, train_loss=loss, lr=lr)  # fmt: skip
        found += [c.verdict for c in detector.update(ev) if c.verdict.kind == "not_learning"]
    (verdict,) = found
    assert verdict.figures["lr_before"] == 0.051
    assert "The learning rate rose 4x before it, from 0.051 to 0.199" in headline(verdict)
    assert remedies(verdict)[0].startswith("**Lower the peak learning rate** the schedule")
    # a constant rate: the generic remedies, no word on the schedule
    flat = [dataclasses.replace(v, lr=0.05) for v in detector.history]
    again = Detector()
    said = [c.verdict for v in flat for c in again.update(v) if c.verdict.kind == "not_learning"]
    assert "rose" not in headline(said[0]) and remedies(said[0])[0].startswith("**Try another")


def test_detector_not_learning_names_an_optimiser_set_to_maximize():
    # hunt 35: SGD(maximize=True) at 1e-3 climbing the loss slowly, told with no cause
    detector, found = Detector(), []
    for e in range(3):
        ev = Evaluation(step=32 * (e + 1), epoch=e, probe_acc_val=0.1, probe_loss_val=2.4,
                        probe_size=128.0, classes=10.0, train_loss=2.4, returned_loss=2.4,
                        lr=1e-3, maximize=("SGD",))  # fmt: skip
        found += [c.verdict for c in detector.update(ev) if c.verdict.kind == "not_learning"]
    assert "`SGD` is set to `maximize=True`: every update climbs the loss" in headline(found[0])


def test_detector_gap_closes_only_well_below_its_bar():
    # held out (training set 90% one class, balanced val): 37 points left was called "closed"
    detector, said = Detector(), []
    for e, val in enumerate([0.3, 0.35, 0.56, 0.57, 0.7]):
        ev = Evaluation(step=31 * (e + 1), epoch=e, train_acc=0.93, val_acc=val, classes=4.0)
        said += [(e, c.change, c.verdict.kind) for c in detector.update(ev)]
    assert said == [(1, "new", "generalisation_gap"), (4, "gone", "generalisation_gap")]


def test_detector_not_learning_when_the_training_loss_stays_above_its_first_value():
    # hunt 24: timm FBNet-C from scratch, its loss 7.5 at the first step and 9-11 after
    # 64-96 (4x ln 10), was "learning under way" at a val probe accuracy of 23%
    row = {"classes": 10.0, "probe_size": 128.0, "probe_loss_val": 7.2, "first_loss": 7.475}
    detector, found = Detector(), []
    for step, (returned, acc) in enumerate([(11.0, 0.14), (9.368, 0.227)], start=1):
        ev = Evaluation(32 * step + 32, step, returned_loss=returned, probe_acc_val=acc, **row)
        found += [c.verdict for c in detector.update(ev)]
    (verdict,) = found
    assert verdict.kind == "not_learning" and verdict.severity == "problem"
    assert headline(verdict).startswith(
        "Not learning since epoch 1 (step 64) (from the start): after 96 steps the training "
        "loss 9.368 is above its first value (7.475) and 4.1x its chance level ln(10) = 2.303"
    )
    # the same loss summed over the batch falls below its first value while it learns
    falls = Evaluation(128, 3, returned_loss=6.0, probe_acc_val=0.3, **row)
    assert [c.change for c in detector.update(falls)] == ["gone"]


def test_detector_not_learning_in_a_fit_resumed_without_its_history_says_since_when():
    # setups hunt 67: resumed at step 33 from a checkpoint saved without the monitors, a
    # model broken before it was told "from the start" (it had reached 79%)
    row = {"classes": 4.0, "probe_size": 48.0, "probe_loss_val": 241.7, "probe_acc_val": 0.229,
           "run_share": 0.8}  # fmt: skip
    detector, found = Detector(), []
    for i, step in enumerate((36, 42)):
        ev = Evaluation(step, 5 + i, resumed_at=33, **row)
        found += [c.verdict for c in detector.update(ev)]
    (verdict,) = found
    text = headline(verdict)
    assert "(since the run resumed at step 33, from a checkpoint without this monitor's" in text
    assert "from the start" not in text
    fresh = Detector()
    for i, step in enumerate((36, 42)):
        verdicts = fresh.update(Evaluation(step, 5 + i, **row))
    assert "(from the start)" in headline(verdicts[0].verdict)


def test_detector_not_learning_names_a_weight_decay_that_holds_it():
    # hunt 59: Adam's `weight_decay=1.0` (L2) held a model at chance from the start: told
    # "not learning" with no cause in its words (the decay only among what to try)
    rows = [series.probe(0.1, weight_decay=1.0, lr=1e-3) for _ in range(4)]
    verdict = series.first(levels.not_learning, series.probe_run(rows))
    text = headline(verdict)
    assert "Weight decay: `weight_decay=1` in an adaptive optimiser (Adam, RMSprop)" in text
    # decoupled (SGD, AdamW): its share of every weight a step
    sgd = [series.probe(0.1, weight_decay=0.3, lr=0.05, decay_per_step=0.015) for _ in range(4)]
    text = headline(series.first(levels.not_learning, series.probe_run(sgd)))
    assert "Weight decay: 0.3 at learning rate 0.05 takes 1.5% off every weight each step" in text


def test_detector_not_learning_stands_while_the_accuracy_is_barely_off_chance():
    # held-out hunt 118 (mobilenet_v2, Adam 0.3): at chance after a blow-up, then 15% and
    # 20.3% val at 0.9 ln 10; was withdrawn at 20.3% ("above it again"), the run ended there
    detector, said = Detector(), []
    rows = [(0.068, 78.8, 2.3), (0.10, 2.33, 2.31), (0.15, 2.23, 2.25), (0.203, 2.08, 2.05),
            (0.45, 1.5, 1.6)]  # fmt: skip
    for e, (acc, loss, train) in enumerate(rows):
        ev = Evaluation(step=32 * (e + 1), epoch=e, val_acc=acc, val_loss=loss,
                        train_acc=acc, train_loss=train, probe_acc_val=acc,
                        probe_loss_val=loss, probe_size=128.0, classes=10.0,
                        returned_loss=train, first_loss=2.32)  # fmt: skip
        said += [(e, c.change, c.verdict.kind) for c in detector.update(ev)]
    assert [s for s in said if s[2] == "not_learning"] == [
        (1, "new", "not_learning"),
        (4, "gone", "not_learning"),  # clearly off chance: 45% (not 20.3% at epoch 3)
    ]
