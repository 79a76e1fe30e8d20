import math

import pytest
import torch

from lightning_cnnviz.core.findings import Finding, summary_text
from lightning_cnnviz.overfitting.detector import OverfittingDetector
from lightning_cnnviz.overfitting.draw import custom_scalars_layout, per_class_image
from lightning_cnnviz.overfitting.metrics import (
    Evaluation,
    expected_calibration_error,
    per_class_accuracy,
    pick_metric,
)
from lightning_cnnviz.overfitting.text import diagnosis_text, headline


def logits_for(confidences, predicted, num_classes=2):
    """Logits whose softmax puts ``c`` on ``predicted`` and spreads ``1 - c`` on the rest."""
    rows = []
    for c, p in zip(confidences, predicted, strict=True):
        probs = torch.full((num_classes,), (1 - c) / (num_classes - 1), dtype=torch.float64)
        probs[p] = c
        rows.append(probs.log())
    return torch.stack(rows).float()


def series(train, val, **extra):
    """Evaluations at epochs 0, 1, ... (10 steps per epoch)."""
    return [
        Evaluation(step=10 * (e + 1), epoch=e, train_loss=t, val_loss=v, **extra)
        for e, (t, v) in enumerate(zip(train, val, strict=True))
    ]


def first_onset(detector, evaluations):
    for ev in evaluations:
        onset = detector.update(ev)
        if onset is not None:
            return onset
    return None


def test_diagnosis_ece_hand_computed(tmp_path):
    # Two samples share bin 13 (conf 0.9: one right, one wrong): |0.5 - 0.9| x 2/4;
    # conf 0.65 (bin 9, right): |1 - 0.65| / 4; conf 0.7 (bin 10, right): |1 - 0.7| / 4.
    logits = logits_for([0.9, 0.9, 0.65, 0.7], [0, 0, 1, 1])
    labels = torch.tensor([0, 1, 1, 1])
    ece = expected_calibration_error(logits, labels)
    assert ece.dim() == 0 and ece.dtype == torch.float32
    assert float(ece) == pytest.approx((0.4 * 2 + 0.35 + 0.3) / 4, abs=1e-6)


def test_diagnosis_ece_bins_are_right_closed_and_fifteen(tmp_path):
    # 0.5 lies on the edge k/n only for n even; with 15 bins 0.5 falls in (7/15, 8/15].
    # Confidence 0.52 (right) and 0.53 (wrong) share bin 7 with 15 bins (acc 0.5, conf
    # 0.525) but not with 20 bins (0.52 in (10/20, 11/20], 0.53 too) -> use 0.54 vs 0.56.
    logits = logits_for([0.52, 0.56], [0, 0])
    labels = torch.tensor([0, 1])
    # 15 bins: 0.52*15 = 7.8 and 0.56*15 = 8.4 -> bins 7 and 8 -> (0.48 + 0.56) / 2
    assert float(expected_calibration_error(logits, labels)) == pytest.approx(0.52, abs=1e-6)
    # 1 bin: |0.5 - 0.54| = 0.04
    assert float(expected_calibration_error(logits, labels, n_bins=1)) == pytest.approx(
        0.04, abs=1e-6
    )


def test_diagnosis_ece_matches_a_loop_reference(tmp_path):
    g = torch.Generator().manual_seed(0)
    logits, labels = (
        3 * torch.randn(500, 10, generator=g),
        torch.randint(0, 10, (500,), generator=g),
    )
    conf, pred = logits.softmax(1).max(1)
    expected = 0.0
    for k in range(15):
        inside = (conf > k / 15) & (conf <= (k + 1) / 15)
        if inside.any():
            acc = (pred[inside] == labels[inside]).float().mean()
            expected += float(inside.float().mean() * (acc - conf[inside].mean()).abs())
    assert float(expected_calibration_error(logits, labels)) == pytest.approx(expected, abs=1e-5)


def test_diagnosis_ece_perfect_and_empty(tmp_path):
    sure = torch.tensor([[50.0, 0.0], [0.0, 50.0]])
    assert float(expected_calibration_error(sure, torch.tensor([0, 1]))) == pytest.approx(0.0)
    assert float(expected_calibration_error(sure, torch.tensor([1, 0]))) == pytest.approx(1.0)
    empty = expected_calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert float(empty) == 0.0


def test_diagnosis_per_class_accuracy(tmp_path):
    logits = torch.eye(4)[[0, 1, 1, 3, 3, 0]]  # predictions 0 1 1 3 3 0
    labels = torch.tensor([0, 1, 0, 3, 3, 3])
    acc = per_class_accuracy(logits, labels)
    assert acc[:2].tolist() == [0.5, 1.0] and math.isnan(acc[2]) and acc[3] == pytest.approx(2 / 3)
    assert per_class_accuracy(logits, labels, num_classes=5).shape == (5,)


def test_diagnosis_detects_val_loss_upturn_at_exact_epoch(tmp_path):
    train = [2.0, 1.0, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.03]
    val = [2.0, 1.1, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1, 1.2]  # best 0.8 at epoch 2; > 0.88 from 4
    onset = first_onset(OverfittingDetector(tolerance=0.1, patience=2), series(train, val))
    assert onset.signal == "val_loss"
    assert (onset.since.epoch, onset.detected.epoch, onset.best.epoch) == (4, 5, 2)
    assert (onset.since.step, onset.detected.step) == (50, 60)
    onset3 = first_onset(OverfittingDetector(tolerance=0.1, patience=3), series(train, val))
    assert (onset3.since.epoch, onset3.detected.epoch) == (4, 6)
    loose = first_onset(OverfittingDetector(tolerance=0.3, patience=2), series(train, val))
    assert (loose.since.epoch, loose.detected.epoch) == (7, 8)  # > 1.04 from epoch 7


def test_diagnosis_detects_upturn_when_best_is_the_first_evaluation(tmp_path):
    # Lightning validates before the training epoch ends: at epoch 0 no train epoch loss
    # exists yet, so the best (first) evaluation has none; the first one seen since counts.
    evs = series([None, 0.24, 0.0003, 0.0001], [0.45, 0.58, 0.60, 0.61])
    onset = first_onset(OverfittingDetector(tolerance=0.1, patience=2), evs)
    assert (onset.since.epoch, onset.detected.epoch, onset.best.epoch) == (1, 2, 0)
    # ...but a train loss that rises from there is divergence, not overfitting
    rising = series([None, 0.24, 0.3, 0.4], [0.45, 0.58, 0.60, 0.61])
    assert first_onset(OverfittingDetector(tolerance=0.1, patience=2), rising) is None


def test_diagnosis_reports_the_onset_once(tmp_path):
    detector = OverfittingDetector()
    evs = series([1, 0.5, 0.4, 0.3, 0.2, 0.1], [1, 0.5, 0.8, 0.9, 1.0, 1.1])
    onsets = [detector.update(ev) for ev in evs]
    assert [o is not None for o in onsets] == [False, False, False, True, False, False]
    assert detector.onset is onsets[3]


def test_diagnosis_healthy_and_lookalikes_give_no_onset(tmp_path):
    def none_for(train, val, **kw):
        return first_onset(OverfittingDetector(**kw), series(train, val)) is None

    falling = [2.0, 1.0, 0.6, 0.45, 0.4, 0.37, 0.36, 0.35]
    assert none_for(falling, [x + 0.05 for x in falling])  # healthy
    wobble = [1.0, 0.8, 0.7, 0.75, 0.69, 0.74, 0.68, 0.73]  # noise under 10%
    assert none_for(falling, wobble)
    # Val loss up because training diverges (train loss rises too): not overfitting.
    assert none_for([1.0, 0.5, 0.6, 0.9, 1.5, 2.0], [1.0, 0.5, 0.7, 1.0, 1.6, 2.2])
    # Above tolerance once, then back: the count restarts.
    assert none_for([1, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05], [1, 0.5, 0.6, 0.52, 0.6, 0.5, 0.6])
    # Exactly at the tolerance is not above it.
    assert none_for([1, 0.5, 0.4, 0.3, 0.2], [1.0, 0.5, 0.625, 0.625, 0.625], tolerance=0.25)
    assert not none_for([1, 0.5, 0.4, 0.3, 0.2], [1.0, 0.5, 0.626, 0.626, 0.6], tolerance=0.25)
    # No train loss logged: the upturn rule cannot tell overfitting from divergence.
    assert none_for([None] * 5, [1.0, 0.5, 0.8, 0.9, 1.0])


def test_diagnosis_detects_growing_ece_gap(tmp_path):
    ece_val = [0.10, 0.06, 0.05, 0.08, 0.10, 0.13, 0.16]
    ece_train = [0.12, 0.05, 0.03, 0.02, 0.02, 0.01, 0.01]
    # gaps: -0.02 0.01 0.02 0.06 0.08 0.12 0.15; above 0.05 and rising from epoch 3
    evs = [
        Evaluation(step=10 * e, epoch=e, val_loss=1.0 - 0.01 * e, ece_val=v, ece_train=t)
        for e, (v, t) in enumerate(zip(ece_val, ece_train, strict=True))
    ]
    onset = first_onset(OverfittingDetector(patience=2, ece_margin=0.05), evs)
    assert onset.signal == "ece_gap"
    assert (onset.since.epoch, onset.detected.epoch, onset.best.epoch) == (3, 4, 4)
    flat = [Evaluation(e, e, ece_val=0.06 + 0.01 * (e % 2), ece_train=0.0) for e in range(8)]
    assert first_onset(OverfittingDetector(ece_margin=0.05), flat) is None  # not growing
    small = [Evaluation(e, e, ece_val=0.01 * e, ece_train=0.0) for e in range(6)]
    assert first_onset(OverfittingDetector(ece_margin=0.05), small) is None  # below margin
    missing = [Evaluation(e, e, ece_val=0.1 * e) for e in range(6)]
    assert first_onset(OverfittingDetector(), missing) is None


def test_diagnosis_detector_state_round_trip_mid_streak(tmp_path):
    train = [2.0, 1.0, 0.6, 0.4, 0.3, 0.2, 0.1]
    val = [2.0, 1.1, 0.8, 0.85, 0.95, 1.0, 1.1]
    evs = series(train, val)
    first = OverfittingDetector()
    for ev in evs[:5]:  # the streak has started at epoch 4
        assert first.update(ev) is None
    resumed = OverfittingDetector()
    resumed.load_state_dict(first.state_dict())
    assert resumed.best == evs[2] and resumed.streak == [evs[4]]
    onset = first_onset(resumed, evs[5:])
    assert (onset.since.epoch, onset.detected.epoch, onset.best.epoch) == (4, 5, 2)
    again = OverfittingDetector()
    again.load_state_dict(resumed.state_dict())
    assert again.onset == resumed.onset and again.history == resumed.history


def test_diagnosis_text_contents(tmp_path):
    evs = series([2.0, 1.0, 0.6, 0.4, 0.3, 0.2], [2.0, 1.1, 0.8, 0.85, 0.9, 0.95])
    evs = [
        Evaluation(**{**vars(ev), "train_acc": 0.9 + 0.02 * ev.epoch, "val_acc": 0.85})
        for ev in evs
    ]
    onset = first_onset(OverfittingDetector(), evs)
    others = [
        Finding("activations", "dead_units", 40, 3, "relu1: 30% of channels dead\nDetails", {}),
        Finding("gradcam", "off_object", 50, 4, "on_object fell from 0.4 to 0.2", {}),
    ]
    text = diagnosis_text(onset, others, tolerance=0.1, val_key="val/loss")
    assert text.startswith(
        "**Overfitting since epoch 4 (step 50)** (detected at epoch 5 (step 60))"
    )
    assert "more than 10% above its best while the training loss keeps falling" in text
    assert "Val loss now 0.95, +19% above its best" in text
    assert "Best epoch so far: **epoch 2 (step 30)**: val loss 0.8, val acc 85.0%" in text
    assert "train loss 0.2, val loss 0.95 (gap 0.75)" in text
    assert "train acc 100.0%, val acc 85.0% (gap 15.0 points)" in text
    assert "ECE, 15 bins" in text
    for remedy in ("Stop at the best epoch", "Augment", "weight decay", "dropout", "more training"):
        assert remedy.lower() in text.lower()
    assert 'EarlyStopping(monitor="val/loss"' in text and "epoch 2 (step 30) had the lowest" in text
    assert "- **activations** (dead_units, epoch 3, step 40): relu1: 30% of channels dead" in text
    assert "Details" not in text  # first line of each finding only
    assert "dead units lower the capacity" in text and "Grad-CAM leaving the object" in text
    assert "kernels gaining" not in text  # only what was reported
    assert "Other monitors" not in diagnosis_text(onset)
    assert headline(onset) == (
        "Overfitting since epoch 4 (step 50): val loss 0.95 is more than 10% above its best "
        "(0.8 at epoch 2) while train loss fell to 0.2."
    )


def test_diagnosis_text_for_ece_gap_and_missing_numbers(tmp_path):
    evs = [Evaluation(e, e, ece_val=0.05 * e, ece_train=0.0) for e in range(5)]
    onset = first_onset(OverfittingDetector(ece_margin=0.05), evs)
    text = diagnosis_text(onset)
    assert "**Overfitting (calibration) since epoch 2 (step 2)**" in text
    assert "over-confident" in text and "train loss n/a" in text and "Best epoch" not in text
    assert headline(onset).startswith("Overfitting (calibration) since epoch 2 (step 2)")


def test_diagnosis_summary_text(tmp_path):
    assert summary_text([]) == "lightning-cnnviz: no problems found in this run."
    found = [
        Finding("overfitting", "overfitting", 60, 5, "Overfitting since epoch 4.", {}),
        Finding("activations", "dead_units", 40, 3, "**relu1**: dead\nmore", {}),
        Finding("kernels", "hf_energy", 40, 3, "x" * 300, {}),
    ]
    lines = summary_text(found).splitlines()
    assert lines[0] == "lightning-cnnviz: 3 problem(s) in this run:"
    assert lines[1] == "  - [overfitting/overfitting] epoch 5, step 60: Overfitting since epoch 4."
    assert lines[2] == "  - [activations/dead_units] epoch 3, step 40: relu1: dead"
    assert len(lines[3]) < 260 and lines[3].endswith("...")


def test_diagnosis_pick_metric_prefers_current_values(tmp_path):
    logged = {"train/loss": torch.tensor(0.3), "train/loss_step": 0.3, "train/loss_epoch": 0.5}
    assert float(pick_metric(logged, "train/loss", epoch_level=True)) == pytest.approx(0.5)
    assert float(pick_metric(logged, "train/loss", epoch_level=False)) == pytest.approx(0.3)
    assert float(pick_metric({"a_step": 2}, "a", epoch_level=True)) == 2.0
    assert pick_metric({"b": 1.0}, "a", epoch_level=True) is None


def test_diagnosis_custom_scalars_layout(tmp_path):
    import re

    layout = custom_scalars_layout(
        "train/loss", "val/loss", "train/acc", "val/acc", tag=lambda t: f"pre/overfitting/{t}"
    )
    (category,) = layout
    charts = layout[category]
    assert category == "pre/overfitting/train vs val"
    assert set(charts) == {"loss", "accuracy", "calibration error (ECE)", "generalisation gap"}
    kind, (train, val) = charts["loss"]
    assert kind == "Multiline"
    assert re.search(train, "train/loss_epoch") and re.search(train, "train/loss")
    assert not re.search(train, "train/loss_step") and re.search(val, "val/loss")
    assert re.search(charts["calibration error (ECE)"][1][1], "pre/overfitting/ece_val")


def test_diagnosis_per_class_image(tmp_path):
    image = per_class_image(torch.tensor([1.0, 0.5, math.nan, 0.0]), epoch=3)
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    many = per_class_image(torch.linspace(0, 1, 200), epoch=0)
    few = per_class_image(torch.linspace(0, 1, 40), epoch=0)
    assert many.shape == few.shape  # capped at the 40 worst classes
