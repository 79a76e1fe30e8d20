"""A BatchNorm lag beside unlike inputs: told both where eval mode fails training images too.

Held out (hunt 115): a MobileNetV3 (BatchNorm momentum 0.01) with noise of sd 0.6 on its
val digits alone, eval mode at 7-9% on training images against 91% on batch statistics,
was told ``inputs_differ`` alone for the whole run; removing the noise left it at chance.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import gap
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from tests.monitors import digits
from tests.overfitting.runs import Net, fit_monitor

SHIFT = {"channel": 0.0, "train_mean": 0.127, "train_std": 0.303, "val_mean": 0.123,
         "val_std": 0.671, "mean_gap": 0.01, "scale_ratio": 2.2}  # fmt: skip
MILD = {**SHIFT, "val_std": 0.39, "scale_ratio": 1.29}
# hunt 115's run at its second validation: eval mode 9% on both probes, 33% on val with
# batch statistics, 86% logged on training batches
LAG = {"train_acc": 0.86, "probe_acc_val": 0.094, "probe_acc_bn": 0.33, "bn_only": 0.246,
       "eval_only": 0.01, "probe_size": 128.0, "probe_size_train": 128.0, "classes": 10.0,
       "bn_momentum": 0.01}  # fmt: skip


def told(rows, shift=None, mild=None, end=False):
    """The kinds a detector tells over ``rows`` (one dict of figures per validation)."""
    detector, kinds = Detector(patience=2), []
    for i, row in enumerate(rows):
        ev = Evaluation(24 * (i + 1), i, input_shift=shift or {}, mild_shift=mild or {}, **row)
        kinds += [c.verdict.kind for c in detector.update(ev)]
    if end:
        kinds += [f"{c.verdict.kind} at end" for c in detector.conclude()]
    return kinds, detector


def test_bn_beside_inputs_eval_mode_failing_training_images_is_told_beside_the_inputs():
    kinds, detector = told([{**LAG, "probe_acc_train": 0.094}] * 3, shift=SHIFT)
    assert kinds == ["inputs_differ", "bn_mismatch"]
    bn = detector.reported["bn_mismatch"]
    assert bn.figures["train_eval_acc"] == 0.094 and bn.figures["train_acc"] == 0.86
    text = headline(bn)
    assert "9.4% in eval mode vs 33.0% with batch statistics" in text
    assert "Eval mode also reads only 9.4% on the train probe's images against 86.0%" in text


def test_bn_beside_inputs_eval_mode_holding_training_images_leaves_the_inputs_alone():
    # eval mode right on training images: what it misses on val images is the inputs'
    kinds, _ = told([{**LAG, "probe_acc_train": 0.85}] * 3, shift=SHIFT)
    assert kinds == ["inputs_differ"]
    kinds, _ = told([LAG] * 3, shift=SHIFT)  # no train probe: unknown, as before
    assert kinds == ["inputs_differ"]


def test_bn_beside_inputs_read_against_val_batch_statistics_without_a_logged_train_accuracy():
    row = {**LAG, "train_acc": None}
    assert gap.failed_on_train_images(Evaluation(0, 0, probe_acc_train=0.094, **row))
    assert not gap.failed_on_train_images(Evaluation(0, 0, probe_acc_train=0.3, **row))
    kinds, _ = told([{**row, "probe_acc_train": 0.094}] * 3, shift=SHIFT)
    assert kinds == ["inputs_differ", "bn_mismatch"]


def test_bn_beside_inputs_mild_shift_gap_failing_training_images_is_the_lag_not_the_inputs():
    # a milder shift is told from the BatchNorm gap alone: not where the gap is the lag's
    # (the val probe 53 points under the train accuracy on batch statistics too: a gap the
    # running statistics cannot explain, told beside them)
    kinds, detector = told([{**LAG, "probe_acc_train": 0.094}] * 3, mild=MILD)
    assert kinds == ["bn_mismatch", "generalisation_gap"]
    assert "beside_inputs" not in detector.reported["bn_mismatch"].figures
    kinds, _ = told([{**LAG, "probe_acc_train": 0.85}] * 3, mild=MILD)
    assert kinds == ["inputs_differ"]


def test_bn_beside_inputs_a_lag_of_the_last_validation_is_told_at_the_end():
    held = {**LAG, "probe_acc_val": 0.3, "bn_only": 0.03, "probe_acc_train": 0.85}
    kinds, detector = told([held, {**LAG, "probe_acc_train": 0.094}], shift=SHIFT, end=True)
    assert kinds == ["inputs_differ", "bn_mismatch at end"]
    assert detector.reported["bn_mismatch"].figures["beside_inputs"]
    kinds, _ = told([held, {**LAG, "probe_acc_train": 0.85}], shift=SHIFT, end=True)
    assert kinds == ["inputs_differ"]


def lagging_run(tmp_path, momentum):
    """Quadrant digits shifted by 3 (running statistics start at 0), noise of sd 0.6 on val."""
    torch.manual_seed(0)
    (x, y), (val_x, val_y) = digits(256, seed=1).tensors, digits(128, seed=2).tensors
    noise = 0.6 * torch.randn(val_x.shape, generator=torch.Generator().manual_seed(3))
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8, momentum=momentum),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(32, 4))  # fmt: skip
    train = DataLoader(TensorDataset(x + 3.0, y), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(val_x + 3.0 + noise, val_y), batch_size=64)
    trainer, _ = fit_monitor(tmp_path, Net(net, lr=0.05), train, val, epochs=4)
    return {f.kind: f for f in findings_of(trainer)}


def test_bn_beside_inputs_a_lagging_batchnorm_on_noisy_val_images_is_told_both(tmp_path):
    # momentum 0.01 over 64 steps keeps half the running statistics' start: eval mode at
    # 50% (chance on 4 classes) on both probes, 100% with batch statistics
    found = lagging_run(tmp_path, momentum=0.01)
    assert found["inputs_differ"].figures["scale_ratio"] > 2
    bn = found["bn_mismatch"]
    assert bn.severity == "problem" and bn.figures["beside_inputs"]
    assert bn.figures["train_eval_acc"] <= 0.6 and bn.figures["train_acc"] >= 0.95
    assert "the running statistics fail the images the model trained on" in bn.message


def test_bn_beside_inputs_a_batchnorm_that_keeps_up_on_noisy_val_images_is_the_inputs(tmp_path):
    found = lagging_run(tmp_path, momentum=0.1)  # the same noise, running statistics caught up
    assert found["inputs_differ"].figures["scale_ratio"] > 2
    assert "bn_mismatch" not in found


def test_bn_beside_inputs_training_images_changed_leave_the_inputs_alone():
    # held out (hunt 119): training inputs zeroed from epoch 5; the running statistics
    # follow the zeroed batches and fail only the train probe's images as they were
    # (eval mode 19.5% on both probes, 84% on batch statistics): the inputs' cause alone,
    # no `bn_mismatch` with "let the running statistics catch up"
    moved = {**SHIFT, "moved_train": 1.0}
    rows = [{**LAG, "probe_acc_train": 0.195, "val_loss": loss} for loss in (0.6, 5.7, 5.7, 5.7)]
    kinds, detector = told(rows, shift=moved, end=True)
    assert kinds == ["inputs_differ"]  # nor at the end of fit
    assert detector.reported["inputs_differ"].figures["moved_train"] == 1.0
    kinds, _ = told(rows, shift=SHIFT)  # the val images' shift: told beside, as before
    assert kinds == ["inputs_differ", "bn_mismatch"]
