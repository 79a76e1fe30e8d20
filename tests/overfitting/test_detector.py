"""The detector: a finding told once, updated while it worsens, a note once it went away."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from lightning_cnnviz.overfitting.batch_stats import batch_norms, batch_stats_logits
from lightning_cnnviz.overfitting.confusion import confused_pairs, confusion_image, pairs_text
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.metrics import figures
from lightning_cnnviz.overfitting.remedies import remedies
from lightning_cnnviz.overfitting.rules import Verdict
from lightning_cnnviz.overfitting.text import calibration_text, diagnosis_text


def feed(detector, vals, train=None, **extra):
    """Feed val losses one by one; the changes by epoch as (epoch, change, kind, best epoch)."""
    out = []
    for e, v in enumerate(vals):
        t = train[e] if train else 1.0 / (e + 1)
        ev = Evaluation(step=10 * (e + 1), epoch=e, train_loss=t, val_loss=v, **extra)
        for c in detector.update(ev):
            best = c.verdict.best.epoch if c.verdict.best else None
            out.append((e, c.change, c.verdict.kind, best, c.verdict.severity))
    return out


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


def test_detector_batch_statistics_leave_the_running_buffers_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 2))
    frozen = nn.BatchNorm1d(6)
    net.append(nn.Identity())
    frozen.eval()
    norms = batch_norms(net)
    assert norms == [net[1]]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(16, 4) * 3 + 2
    net.eval()
    with torch.no_grad():
        out = batch_stats_logits(net, norms, x, chunk=8)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k  # running_mean, running_var, num_batches_tracked
    assert [m.training for m in net.modules()] == [False] * 6
    reference = nn.Sequential(*[m for m in net]).eval()  # same modules: BN in train, rest eval
    with torch.no_grad():
        h = net[0](x[:8])
        mean, var = h.mean(0), h.var(0, unbiased=False)
        bn = (h - mean) / torch.sqrt(var + net[1].eps) * net[1].weight + net[1].bias
        expected = reference[3](bn)
    assert torch.allclose(out[:8], expected, atol=1e-5)
    assert not math.isclose(float(out.std()), 0.0)


def test_detector_val_curves_wait_while_batchnorm_eval_mode_is_broken():
    # eval-mode val accuracy falls and val loss rises because the running statistics
    # are stale (eval 0.40 vs 0.96 with batch statistics): BatchNorm, not memorisation
    detector = Detector()
    rows = [
        (0.70, 1.20, 0.80, 0.72),
        (0.74, 1.05, 0.86, 0.80),
        (0.56, 1.41, 0.90, 0.88),
        (0.45, 1.63, 0.94, 0.93),
        (0.42, 1.69, 0.97, 0.96),
        (0.40, 1.75, 0.98, 0.97),
    ]
    kinds = []
    for e, (acc, loss, train_acc, bn_acc) in enumerate(rows):
        ev = Evaluation(step=63 * (e + 1), epoch=e, val_acc=acc, val_loss=loss,
                        train_acc=train_acc, train_loss=1.0 / (e + 2), probe_acc_val=acc,
                        probe_acc_bn=bn_acc, probe_size=128.0, bn_only=bn_acc - acc,
                        eval_only=0.0)  # fmt: skip
        kinds += [c.verdict.kind for c in detector.update(ev)]
    assert set(kinds) == {"bn_mismatch"}
    kinds = []
    # the same curves with eval mode sound are memorisation and overfitting
    sound = Detector()
    for e, (acc, loss, train_acc, _) in enumerate(rows):
        ev = Evaluation(step=63 * (e + 1), epoch=e, val_acc=acc, val_loss=loss,
                        train_acc=train_acc, train_loss=1.0 / (e + 2))  # fmt: skip
        kinds += [c.verdict.kind for c in sound.update(ev)]
    assert {"memorisation", "overfitting"} <= set(kinds)
    # the remedies monitor the metrics the module logs, not the defaults
    keys = {"val_loss": "loss/valid", "val_acc": "acc/valid"}
    text = diagnosis_text(sound.active, ev, keys=keys)
    assert 'ModelCheckpoint(monitor="acc/valid", mode="max")' in text
    assert 'EarlyStopping(monitor="loss/valid"' in text and "val/acc" not in text


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


def test_detector_one_validation_with_its_own_batchnorm_gap_confirms_no_val_curve():
    # eval mode broken at the latest validation only (gap 27 points, not yet the two a
    # bn_mismatch finding needs): the val curves' jump confirms neither curve rule
    rows = [(0.60, 1.1), (0.70, 0.9), (0.74, 0.8), (0.76, 0.6), (0.765, 0.55), (0.768, 0.506),
            (0.70, 0.75), (0.58, 1.25)]  # fmt: skip

    def kinds(gap):
        detector, out = Detector(), []
        for e, (acc, loss) in enumerate(rows):
            g = gap if e == len(rows) - 1 else 0.0
            ev = Evaluation(step=10 * (e + 1), epoch=e, val_acc=acc, val_loss=loss,
                            train_acc=0.8 + 0.02 * e, train_loss=0.5 / (e + 1),
                            probe_acc_val=acc, probe_acc_bn=acc + g, probe_size=128.0,
                            bn_only=g, eval_only=0.0)  # fmt: skip
            out += [c.verdict.kind for c in detector.update(ev)]
        return out

    assert kinds(0.27) == []
    assert kinds(0.0) == ["memorisation", "overfitting"]  # eval mode sound: both are real


def test_detector_val_curves_leave_out_an_earlier_batchnorm_broken_validation():
    # h_conv3d_adamw seed 1 (healthy, 99.5% val): eval mode broken at one validation (val
    # loss 1.98, probe 58% in eval mode vs 99% with batch statistics), sound at the next
    # (0.022, 75% above a best of 0.0127: a rise under the 0.01 floor)
    rows = [(0.0230, 0.037, None), (0.0127, 0.021, None), (0.0168, 0.009, None),
            (0.0157, 0.008, None), (0.0273, 0.007, None), (1.976, 0.012, (0.578, 0.99)),
            (0.0221, 0.014, (1.0, 1.0))]  # fmt: skip

    def kinds(measured):
        detector, out = Detector(), []
        for e, (val, train, bn) in enumerate(rows):
            eval_acc, bn_acc = bn if bn and measured else (None, None)
            gap = None if bn_acc is None else bn_acc - eval_acc
            ev = Evaluation(step=10 * (e + 1), epoch=e, val_loss=val, train_loss=train,
                            probe_acc_val=eval_acc, probe_acc_bn=bn_acc, probe_size=128.0,
                            bn_only=gap, eval_only=None if gap is None else 0.0)  # fmt: skip
            out += [c.verdict.kind for c in detector.update(ev)]
        return out

    assert kinds(measured=True) == []
    assert kinds(measured=False) == ["overfitting"]  # the jump alone reads as a rise


def test_detector_val_curves_leave_out_a_validation_whose_eval_loss_is_batchnorms():
    # h_mixup seed 0 (BN CNN, mixup, healthy: 99.8% val at the end): at step 434 the val
    # loss rose to 0.229 (best 0.094) at 96% eval-mode accuracy, while the same probe with
    # batch statistics had loss 0.049 (eval mode 0.214), 100%: both curve rules fired
    rows = [  # val loss, val acc, train loss, train acc, probe loss eval / batch statistics
        (0.6761, 0.685, 1.022, 0.492, 0.629, 0.412), (0.4769, 0.797, 0.525, 0.614, 0.477, 0.169),
        (0.0941, 0.997, 0.470, 0.682, 0.099, 0.099), (0.1157, 0.998, 0.466, 0.601, 0.119, None),
        (0.1107, 0.988, 0.517, 0.684, 0.131, 0.101), (0.1557, 0.977, 0.432, 0.638, 0.178, 0.112),
        (0.2292, 0.963, 0.371, 0.646, 0.214, 0.049), (0.1220, 0.998, 0.362, 0.607, 0.129, None),
    ]  # fmt: skip

    def kinds(measured):
        detector, out = Detector(), []
        for e, (loss, acc, train_loss, train_acc, eval_loss, bn_loss) in enumerate(rows):
            bn = bn_loss is not None and measured
            ev = Evaluation(step=62 * (e + 1), epoch=e, val_loss=loss, val_acc=acc,
                            train_loss=train_loss, train_acc=train_acc, probe_acc_val=acc,
                            probe_loss_val=eval_loss, probe_loss_bn=bn_loss if bn else None,
                            probe_acc_bn=1.0 if bn else None, bn_only=0.0 if bn else None,
                            eval_only=0.0 if bn else None, probe_size=128.0, bn_size=96.0,
                            classes=4.0)  # fmt: skip
            out += [(c.verdict.kind, c.verdict.severity) for c in detector.update(ev)
                    if c.verdict.kind in ("overfitting", "memorisation")]  # fmt: skip
        return out

    assert kinds(measured=True) == []
    # without the batch-statistics pass the jump reads as a curve finding
    assert ("memorisation", "problem") in kinds(measured=False)


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


def test_detector_conclude_reports_a_batchnorm_mismatch_of_the_last_validation():
    # h_mixup seed 1: eval mode 52% vs 100% with batch statistics at the last validation;
    # the streak rule waits for a second one, which never comes
    def ev(step, eval_acc, bn_acc):
        return Evaluation(step=step, epoch=step // 62, val_acc=eval_acc, probe_acc_val=eval_acc,
                          probe_loss_val=2.0 - 1.9 * eval_acc, probe_acc_bn=bn_acc,
                          probe_loss_bn=0.1, bn_only=bn_acc - eval_acc, eval_only=0.0,
                          probe_size=128.0, bn_size=96.0, classes=4.0)  # fmt: skip

    detector, rows = Detector(), ((62, 0.99, 1.0), (124, 1.0, 1.0), (186, 0.52, 1.0))
    for step, eval_acc, bn_acc in rows:
        assert detector.update(ev(step, eval_acc, bn_acc)) == []
    (change,) = detector.conclude()
    said = (change.change, change.verdict.kind, change.verdict.severity)
    assert said == ("new", "bn_mismatch", "problem")
    assert change.verdict.figures["eval_acc"] == pytest.approx(0.52)
    assert detector.conclude() == []  # standing now: said once
    sound = Detector()
    for step in (62, 124):
        sound.update(ev(step, 0.99, 1.0))
    assert sound.conclude() == []


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
        "step, and the training loss has climbed back 27.0%"
    )
    assert remedies(verdict)[0].startswith("**Lower the weight decay** (10-100x)")
    assert detector.checks_ran()["weight decay"]
    assert run(5e-2)[1] == []  # a usual decay: the same curve says nothing of it
    # a BatchNorm net under the same decay: the loss climbs, train accuracy holds
    assert run(20.0, held=True)[1] == []


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
    # train loss 2.18, 2.10, 2.11 at three validations: "no problems found"
    from lightning_cnnviz.overfitting.remedies import remedies

    def run(wd, losses=(2.18, 2.10, 2.106)):
        detector, said = Detector(), []
        for e, train in enumerate(losses):
            ev = Evaluation(step=125 * (e + 1), epoch=e, train_loss=train, train_acc=0.24,
                            val_acc=0.27, lr=1e-3, weight_decay=wd, classes=10.0)  # fmt: skip
            said += [(e, c.change, c.verdict) for c in detector.update(ev)]
        return said

    ((e, change, verdict),) = run(1.0)
    assert (e, change, verdict.kind) == (2, "new", "weight_decay_too_strong")
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
    assert text.startswith("Training unstable: the training loss has climbed back 152.0% since")
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
    assert _climb_run(noisy, val=noisy_val, lr=lambda e: 0.001) == []
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


def test_detector_bn_mismatch_remedy_reads_the_models_momentum():
    # held out: torchvision mobilenet_v3_small (momentum 0.01): eval mode 25% vs 90%
    ev = Evaluation(92, 1, probe_acc_val=0.25, probe_acc_bn=0.9, bn_only=0.65, eval_only=0.0,
                    probe_size=128.0, bn_momentum=0.01)  # fmt: skip
    verdict = Verdict("bn_mismatch", ev, ev, None, {})
    assert remedies(verdict)[0].startswith(
        "**Let the running statistics catch up**: BatchNorm's `momentum` is 0.01 here (each "
        "batch moves them 1.0% of the way); raise it to 0.1 (PyTorch's default)"
    )
    unknown = dataclasses.replace(ev, bn_momentum=None)
    plain = Verdict("bn_mismatch", unknown, unknown, None, {})
    assert remedies(plain)[0].startswith("**Let the running statistics catch up**: a larger")


def test_detector_memorisation_check_runs_on_accuracies_of_zero():
    # setups hunt 18: 1000 classes read a train accuracy of 0.0 at first, and the summary
    # said memorisation "needs train and val accuracy" while both were logged and read
    detector = Detector()
    detector.update(Evaluation(10, 0, train_acc=0.0, val_acc=0.0, train_loss=6.9, val_loss=6.9))
    assert detector.checks_ran()["memorisation"]


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


@pytest.mark.parametrize(
    ("losses", "told"),
    [
        ([1.35, 0.92, 0.81, 0.86, 0.84], True),  # hunt 25: AdamW wd=20, plain CNN, 75-83% val
        ([0.60, 0.31, 0.25, 0.28, 0.27], False),  # the same decay on a BatchNorm net
        ([1.35, 0.92, 0.81, 0.70, 0.62], False),  # still falling
    ],
)
def test_detector_weight_decay_holding_the_train_loss_back(losses, told):
    from lightning_cnnviz.overfitting import loss_climb

    evs = [Evaluation(32 * (i + 1), i, train_loss=t, lr=1e-3, weight_decay=20.0,
                      decay_per_step=0.02, classes=10.0) for i, t in enumerate(losses)]  # fmt: skip
    verdict = loss_climb.decay_too_strong(evs)
    assert (verdict is not None) == told
    if told:
        assert verdict.figures["held_back"] and verdict.figures["train_loss"] == 0.84


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
