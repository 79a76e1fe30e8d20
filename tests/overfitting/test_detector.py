"""The detector: a finding told once, updated while it worsens, a note once it went away."""

import dataclasses
import math

import pytest
import torch

from lightning_cnnviz.overfitting.confusion import confused_pairs, confusion_image, pairs_text
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.metrics import figures
from lightning_cnnviz.overfitting.text import calibration_text, diagnosis_text
from tests.overfitting.series import feed


def test_detector_updates_a_worsening_onset_instead_of_freezing_it():
    vals = [2.0, 1.1, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1, 1.05, 1.2]
    detector = Detector()
    changes = feed(detector, vals)
    assert changes[0] == (6, "new", "overfitting", 2, "problem")
    assert [c[:2] for c in changes[1:]] == [(7, "worse"), (9, "worse")]  # 1.05 is no worse
    (latest,) = detector.active
    assert latest.detected.epoch == 9 and latest.figures["rise"] == pytest.approx(0.5)


def test_detector_bump_within_the_noise_is_not_reported():
    # a 2-epoch bump as large as the curve's own wiggles, a new low, then a sustained rise
    vals = [2.0, 1.0, 0.6, 0.5, 0.7, 0.75, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    changes = feed(Detector(), vals)
    assert changes == [(11, "new", "overfitting", 6, "problem"),
                       (12, "worse", "overfitting", 6, "problem")]  # fmt: skip


def test_detector_bump_then_new_low_becomes_a_note_then_a_new_onset():
    # a smooth curve (no noise to hide in): a clear 2-epoch bump, a new low, a real rise
    smooth = [0.3 + math.exp(-i / 2) for i in range(10)]
    vals = [*smooth, 0.45, 0.5, 0.3, 0.31, 0.4, 0.5, 0.6]
    detector = Detector()
    changes = feed(detector, vals)
    assert changes[0] == (11, "new", "overfitting", 9, "problem")
    assert changes[1] == (12, "gone", "overfitting", 9, "note")
    # the bump now counts in the noise: the rise from epoch 13 needs more to stand out
    assert changes[2] == (16, "new", "overfitting", 12, "problem")
    (latest,) = detector.active
    assert latest.since.epoch == 13 and "stop at epoch 12" in headline(latest)
    note = Detector()
    feed(note, vals[:13])
    assert "temporary bump" in headline(note.reported["overfitting"])


def test_detector_state_round_trip_keeps_what_was_reported():
    vals = [2.0, 1.1, 0.8, 0.85, 0.9, 0.95, 1.0]
    first = Detector()
    feed(first, vals)
    resumed = Detector()
    resumed.load_state_dict(first.state_dict())
    assert resumed.history == first.history
    assert resumed.reported["overfitting"].best.epoch == 2
    ev = Evaluation(step=80, epoch=7, train_loss=0.1, val_loss=1.2)
    assert [c.change for c in resumed.update(ev)] == ["worse"]  # not told as new again


def test_detector_under_confidence_is_never_overfitting():
    # the memorisation run: val loss still falling, val probe under-confident
    # (confidence 0.52 at 92.5%) while the ECE gap grows: nothing to report yet
    detector = Detector()
    for e in range(6):
        ev = Evaluation(
            step=e, epoch=e, train_loss=1 / (e + 1), val_loss=1.0 - 0.1 * e,
            ece_val=0.1 + 0.1 * e, ece_train=0.05, conf_val=0.52, probe_acc_val=0.925,
        )  # fmt: skip
        assert detector.update(ev) == []
    assert ev.overconfidence_val == pytest.approx(-0.405)
    text = calibration_text(ev)
    assert text.startswith("under-confident on validation images") and "over-confident" not in text
    assert "Overfitting" not in diagnosis_text(detector.active, ev)


def test_detector_figures_are_signed_and_count_confusions():
    # val probe: two sure and right, one sure and wrong (class 1 taken for 0), one unsure
    val = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.1, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    host, per_class, counts = figures({}, {"val": val, "bn": val}, {"val": labels})
    sure, unsure = torch.sigmoid(torch.tensor([4.0, 0.1])).tolist()  # top softmax of 2 classes
    assert host["conf_val"] == pytest.approx((3 * sure + unsure) / 4, rel=1e-5)
    assert host["probe_acc_val"] == 0.75 and host["probe_acc_bn"] == 0.75
    assert host["probe_loss_val"] == pytest.approx(
        torch.nn.functional.cross_entropy(val, labels).item(), rel=1e-6
    )
    assert host["classes"] == 2 and per_class == [1.0, 0.5]
    assert counts == [[2.0, 0.0], [1.0, 1.0]]
    pairs = confused_pairs(counts, val.argmax(1).tolist(), labels.tolist(), [10, 11, 12, 13])
    assert [(p.true, p.predicted, p.count, p.examples) for p in pairs] == [(1, 0, 1, [11])]
    assert pairs_text(pairs).startswith("- true **1** taken for **0**: 1 of 2 probe images (50%)")
    image = confusion_image(counts, epoch=3)
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and image.shape[-1] >= 24


def test_detector_accuracy_remedy_says_to_log_the_accuracy_it_monitors():
    # memorisation read on the val probe (the module logs no val accuracy): a checkpoint
    # on "val/acc" would fail at its first save, so the remedy says to log it first
    rows = [(0.80, 0.5), (0.90, 0.6), (0.84, 0.7), (0.78, 0.8), (0.70, 0.9), (0.62, 0.95)]
    detector, changes = Detector(), []
    for e, (acc, train_acc) in enumerate(rows):
        ev = Evaluation(step=50 * (e + 1), epoch=e, val_loss=1.0 - acc, train_acc=train_acc,
                        train_loss=1.0 / (e + 2), probe_acc_val=acc, probe_size=128.0)  # fmt: skip
        changes += detector.update(ev)
    assert "memorisation" in {c.verdict.kind for c in changes}
    text = diagnosis_text(detector.active, ev)
    assert 'monitor="val/acc", mode="max")` (this module logs no `val/acc`: log it' in text
    logged = dataclasses.replace(ev, val_acc=0.62)
    assert "logs no" not in diagnosis_text(
        [dataclasses.replace(v, detected=logged) for v in detector.active], logged
    )


def test_detector_bump_back_within_tolerance_becomes_a_note():
    # a healthy 25-epoch plateau (AdamW, dropout, crops; val acc 97-98% throughout): a
    # +39% bump at epoch 20 that the rule confirms, then back to +3% of the best
    vals = [0.30, 0.15, 0.11, 0.09, 0.08, 0.075, 0.07, 0.068, 0.066, 0.065, 0.064, 0.0645,
            0.063, 0.0642, 0.0643, 0.0595, 0.0705, 0.0696, 0.0725, 0.0753, 0.0828, 0.0678,
            0.0611, 0.0696, 0.0612]  # fmt: skip
    detector, changes = Detector(), []
    for e, v in enumerate(vals):
        ev = Evaluation(step=10 * (e + 1), epoch=e, train_loss=0.5 / (e + 1), val_loss=v)
        changes += [(e, c.change, c.verdict.kind) for c in detector.update(ev)]
    assert changes[0][1:] == ("new", "overfitting")
    assert changes[-1][1:] == ("gone", "overfitting")
    assert [v.severity for v in detector.active] == ["note"]
    # hunt 26: back within the tolerance, not below the best, is no "new low"
    said = headline(detector.active[0])
    assert "came back near its best (0.0611 at epoch 22; 0.0595 at epoch 15)" in said
    assert "new low" not in said


def test_detector_val_curves_wait_while_the_model_is_at_chance():
    # resnet50, 40 steps (random-init, 10 classes): the val probe stays at chance while
    # val loss wanders up and train loss falls; nothing was learnt, so nothing overfits
    rows = [
        (0.109, 2.37, 2.94),
        (0.117, 2.78, 2.45),
        (0.102, 2.91, 2.42),
        (0.125, 2.68, 2.87),
        (0.111, 3.10, 2.30),
        (0.118, 3.25, 2.20),
    ]

    def kinds(acc_shift):
        detector, out = Detector(), []
        for e, (acc, loss, train_loss) in enumerate(rows):
            ev = Evaluation(step=10 * (e + 1), epoch=0, val_acc=acc + acc_shift, val_loss=loss,
                            train_loss=train_loss, probe_acc_val=acc + acc_shift,
                            probe_loss_val=loss, probe_size=128.0, classes=10.0)  # fmt: skip
            out += [c.verdict.kind for c in detector.update(ev)]
        return out

    assert kinds(0.0) == ["not_learning"]
    assert kinds(0.6) == ["overfitting"]  # the same loss curve on a model that learnt


def test_detector_gap_left_to_memorisation_when_it_stands():
    # 50% noisy labels: val accuracy falls from its peak while train accuracy (on the noisy
    # labels) climbs far past it; the gap is memorisation's, with its cause
    val = [0.8, 0.9, 0.89, 0.85, 0.8, 0.75, 0.68, 0.62, 0.6, 0.55, 0.5, 0.48]
    train = [0.3, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.997]
    detector, kinds = Detector(), []
    for e, (v, t) in enumerate(zip(val, train, strict=True)):
        ev = Evaluation(step=24 * (e + 1), epoch=e, val_acc=v, train_acc=t,
                        val_loss=1.0 + max(0, 0.9 - v), train_loss=1.0 - 0.5 * t)  # fmt: skip
        kinds += [c.verdict.kind for c in detector.update(ev)]
    assert "memorisation" in kinds and "generalisation_gap" not in kinds


def test_detector_memorisation_check_runs_on_accuracies_of_zero():
    # setups hunt 18: 1000 classes read a train accuracy of 0.0 at first, and the summary
    # said memorisation "needs train and val accuracy" while both were logged and read
    detector = Detector()
    detector.update(Evaluation(10, 0, train_acc=0.0, val_acc=0.0, train_loss=6.9, val_loss=6.9))
    assert detector.checks_ran()["memorisation"]


def test_detector_a_split_class_gone_lets_a_rising_val_loss_be_told():
    # held out (hunt 26): a 3-D net on 80 volumes had class 2 at 1% val recall at one early
    # validation (a standing generalisation gap with that class), every class at 40-78%
    # from then on, and its val loss rising 19% was never told: the curves waited on the
    # gap as first told
    vals = [1.3, 1.1, 1.0, 0.96, 0.98, 0.99, 1.01, 1.04, 1.07, 1.1, 1.12, 1.14]

    def run(split_later):
        detector, told = Detector(), []
        for e, v in enumerate(vals):
            split = [2] if e in (1, 2) else (split_later if e % 3 == 0 else None)
            accs = {"train_acc": 0.9 + 0.01 * e, "val_acc": 0.45, "split_classes": split}
            ev = Evaluation(step=5 * (e + 1), epoch=e, train_loss=0.5 / (e + 1), val_loss=v, **accs)
            told += [(e, c.change, c.verdict.kind) for c in detector.update(ev)]
        return told

    gone = run(split_later=[])  # the train probe read no split class again from epoch 3
    assert (1, "new", "generalisation_gap") in gone
    assert any(kind == "overfitting" and change == "new" for _, change, kind in gone)
    kept = run(split_later=[2])  # still split: the rising val loss is that, not overfitting
    assert not any(kind == "overfitting" for _, _, kind in kept)
