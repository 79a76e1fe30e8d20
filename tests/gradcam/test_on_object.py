"""The on-object part of Grad-CAM: foreground, HiResCAM, and the shortcut rules (hand-built)."""

import pytest
import torch
from torch import nn

from lightning_cnnviz.core.cam import grad_cam
from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from lightning_cnnviz.gradcam.metrics import on_object
from lightning_cnnviz.gradcam.objects import components, foreground, without_object
from lightning_cnnviz.gradcam.shortcut import on_object_findings
from lightning_cnnviz.gradcam.shortcut_rules import train_val_gap


def test_on_object_components_label_each_blob():
    mask = torch.zeros(2, 5, 5, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 1, 1] = True  # diagonal neighbours: one component (8-neighbourhood)
    mask[0, 3:5, 3:5] = True  # a second one
    mask[1] = True  # one component covering the image
    labels = components(mask)
    assert labels.dtype == torch.long and (labels[~mask] == 0).all()
    assert labels[0, 0, 0] == labels[0, 1, 1] == 7  # 1 + flat index of (1, 1)
    assert (labels[0, 3:, 3:] == 25).all()
    assert (labels[1] == 25).all()
    assert (components(torch.zeros(1, 3, 3, dtype=torch.bool)) == 0).all()


def test_on_object_foreground_drops_small_isolated_blobs():
    image = torch.zeros(3, 1, 12, 12)
    image[:, 0, 2:10, 5:7] = 0.9  # a stroke: 16 pixels
    image[0, 0, 0, 0:3] = 1.0  # a marker: 3 pixels, isolated (< 0.25 x 16)
    image[1, 0, 0:3, 0:2] = 1.0  # a 6-pixel blob: >= 0.25 x 16, kept (a broken stroke)
    image[2, 0, 1, 6] = 1.0  # touching the stroke: part of the object
    fg = foreground(image, 0.2)
    assert fg.sum((1, 2)).tolist() == [16, 22, 17]
    assert not fg[0, 0, 0:3].any() and fg[1, 0:3, 0:2].all()
    assert foreground(image, 0.2, min_component=0.0).sum((1, 2)).tolist() == [19, 22, 17]
    assert foreground(torch.zeros(1, 3, 4, 4), 0.2).all()  # nothing stands out: all object
    # the CAM all on the marker is not on the object any more
    cam = torch.zeros(3, 12, 12)
    cam[:, 0, 0:3] = 1.0
    assert on_object(cam, fg)[0] == 0.0
    assert on_object(cam, foreground(image, 0.2, 0.0))[0] == 1.0


def test_on_object_foreground_of_large_images_on_coarse_cells():
    image = torch.zeros(2, 3, 150, 130)  # cells of ceil(150 / 64) = 3 pixels
    image[:, :, 20:120, 30:100] = 1.0  # the object: 7000 pixels
    image[0, :, 140:143, 5:8] = 1.0  # a 9-pixel speck far away: dropped
    image[1, :, 10:14, 30:100] = 0.9  # a bar 6 px above the object (2 cells): its own blob
    fg = foreground(image, 0.2)
    assert fg.shape == (2, 150, 130) and fg.sum((1, 2)).tolist() == [7000, 7000]
    assert foreground(image, 0.2, max_side=150)[1].sum() == 7000  # same at full resolution
    assert (foreground(image, 0.2) <= (image.mean(1) > 0.2)).all()  # never adds a pixel


def test_on_object_hirescam_sees_a_cue_read_by_position():
    # identity conv + ReLU + a linear head that reads pixel (0, 0) for, (3, 3) against class 0
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    head = nn.Linear(16, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        head.weight.zero_()
        head.weight[0, 0], head.weight[0, 15] = 1.0, -1.0
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).train()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 3, 3] = 2.0
    hires, logits = grad_cam(net, net[1], x, 0, method="hirescam")
    expected = torch.zeros(1, 4, 4)
    expected[0, 0, 0] = 2.0  # gradient 1 x activation 2; (3, 3) is -2, clipped by the ReLU
    assert torch.allclose(hires, expected) and logits[0].tolist() == [0.0, 0.0]
    assert all(p.grad is None for p in net.parameters()) and net.training  # no side effects
    # Grad-CAM weighs the channel by its mean gradient (1 - 1) / 16 = 0: blind to the cue
    plain, _ = grad_cam(net, net[1], x, 0)
    assert float(plain.abs().max()) == 0.0
    assert GradCAMMonitor(method="hirescam").method == "hirescam"


def test_on_object_train_val_gap_needs_patience_and_both_margins():
    state = {}
    # 0.25 vs 0.3: not 0.1 below; 0.5 vs 0.65: 0.15 below but above 0.75 x 0.65 = 0.4875
    assert not train_val_gap(state, 0.25, 0.3) and not train_val_gap(state, 0.5, 0.65)
    assert [train_val_gap(state, 0.1, 0.3) for _ in range(4)] == [False, True, False, False]
    assert not train_val_gap(state, 0.3, 0.3)  # recovered: a new run may report again
    assert [train_val_gap(state, 0.1, 0.3, patience=1)] == [True]


def test_on_object_monitor_reports_cam_shortcut_once():
    monitor = GradCAMMonitor()
    trainer = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    with pytest.warns(UserWarning, match="training images only: 0.14"):
        for step, (train, val) in enumerate([(0.30, 0.31), (0.14, 0.31), (0.14, 0.30)]):
            trainer.global_step = step
            monitor._check_on_object(trainer, train, val)
        monitor._check_on_object(trainer, 0.14, 0.31)
    found = [(f.kind, f.step) for f in findings_of(trainer)]
    assert found == [("cam_off_object", 2), ("cam_shortcut", 2)]
    shortcut = findings_of(trainer)[1]
    assert shortcut.figures == {"on_object": 0.14, "val_on_object": 0.30, "splits": "train"}
    assert "0.14" in shortcut.message and "0.30 on validation" in shortcut.message
    restored = GradCAMMonitor()
    restored.load_state_dict(monitor.state_dict())
    assert restored._on_object["gap_run"] == 3


def test_on_object_monitor_reports_cue_on_both_splits():
    """No train/val gap, but the CAM avoids the object on both splits: a shared shortcut."""
    monitor = GradCAMMonitor()
    trainer = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    areas = (0.19, 0.20)  # the digit covers about a fifth of the image
    logs = [(0.30, 0.31), (0.15, 0.14), (0.13, 0.15), (0.14, 0.15)]
    with pytest.warns(UserWarning, match="training and validation images alike"):
        for step, (train, val) in enumerate(logs):
            trainer.global_step = step
            monitor._check_on_object(trainer, train, val, areas=areas)
    found = [(f.kind, f.step, f.figures.get("splits")) for f in findings_of(trainer)]
    assert ("cam_shortcut", 2, "both") in found  # the second low log in a row
    assert [k for k, *_ in found].count("cam_shortcut") == 1
    both = next(f for f in findings_of(trainer) if f.figures.get("splits") == "both")
    assert both.figures["object_share"] == 0.19 and both.figures["val_on_object"] == 0.15
    assert "0.15 (val)" in both.message and "covers 0.19 and 0.20" in both.message


@pytest.mark.parametrize("val_accuracy, splits", [(0.5, "train"), (0.875, "both"), (None, "both")])
def test_on_object_both_splits_names_the_split_the_cue_is_on(val_accuracy, splits):
    """A val probe at chance beside a training probe all right: val images lack the cue."""
    state, areas, found = {}, (0.19, 0.2), []
    for train, val in ((0.15, 0.14), (0.13, 0.15)):
        found += on_object_findings(state, train, val, areas, 1.0, without=(None, 2),
                                    val_accuracy=val_accuracy)  # fmt: skip
    ((kind, message, figures),) = found
    assert kind == "cam_shortcut" and figures["splits"] == splits
    lacks = "a cue that validation images lack: the val probe's accuracy is 50% against 100%"
    assert (lacks in message) == (splits == "train")
    assert ("validation accuracy cannot reveal it" in message) == (splits == "both")


def test_on_object_both_splits_waits_while_the_model_needs_the_object():
    # held out: a healthy 100-class net on two-digit images, its CAM at 1.0x the area
    # share on both splits, kept 12% of the probe right with the digits removed; a
    # label-coding marker on both splits kept 88-100% (healthy digit nets: 12%)
    monitor = GradCAMMonitor()
    trainer = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    low = [(0.18, 0.19)] * 3
    for step, (train, val) in enumerate(low):
        trainer.global_step = step
        monitor._check_on_object(trainer, train, val, areas=(0.18, 0.19), without=(0.12, 100))
    assert [f for f in findings_of(trainer) if f.kind == "cam_shortcut"] == []
    with pytest.warns(UserWarning, match="with their object removed"):
        for step, (train, val) in enumerate(low, start=3):
            trainer.global_step = step
            monitor._check_on_object(trainer, train, val, areas=(0.18, 0.19), without=(1.0, 10))
    (both,) = [f for f in findings_of(trainer) if f.kind == "cam_shortcut"]
    assert both.step == 4 and both.figures["right_without_object"] == 1.0
    assert "it still classifies 100% of the training probe's images right" in both.message


def test_on_object_cam_on_the_object_or_spread_evenly_is_not_a_shortcut():
    monitor = GradCAMMonitor()
    trainer = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    for step, value in enumerate([0.30, 0.35, 0.25, 0.24, 0.10]):  # >= 1.2x the area share,
        trainer.global_step = step  # or below it once only
        monitor._check_on_object(trainer, value, value, areas=(0.2, 0.2))
    assert [f for f in findings_of(trainer) if f.kind == "cam_shortcut"] == []


def test_on_object_a_model_that_keeps_its_class_without_the_object_reads_a_cue():
    # held out: a class-coded patch on the top or bottom edge, both splits (100% val, 57%
    # without the patch): HiResCAM at 1.25x the object's area share (the patch as bright
    # as the strokes), 62% of the probe kept right with the digits removed
    monitor = GradCAMMonitor()
    trainer = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    areas = (0.17, 0.17)
    with pytest.warns(UserWarning, match="reads the class from outside the object"):
        for step, kept in enumerate((0.125, 0.625, 0.625, 0.625)):
            trainer.global_step = step
            monitor._check_on_object(trainer, 0.21, 0.22, areas=areas, without=(kept, 10))
    (found,) = [f for f in findings_of(trainer) if f.kind == "cam_shortcut"]
    assert (found.step, found.figures["splits"]) == (2, "outside")
    assert found.figures["right_without_object"] == 0.625
    assert found.message.startswith("The model reads the class from outside the object")
    assert "still classifies 62% of them right (chance 10%)" in found.message
    # healthy digit nets keep 12%; two classes at 8 probe images are too coarse to judge
    for without in ((0.125, 10), (1.0, 2)):
        monitor, run = GradCAMMonitor(), type("Run", (), {"global_step": 0, "current_epoch": 0})()
        for step in range(4):
            run.global_step = step
            monitor._check_on_object(run, 0.21, 0.22, areas=areas, without=without)
        assert findings_of(run) == []


def test_on_object_off_object_waits_two_logs_and_a_model_that_needs_the_object():
    # hunt 27: a healthy U-Net-like net (93-95% val): its CAM dipped 0.076 -> 0.025 for one
    # log (seed 0), or drifted 0.32 -> 0.14 around its digits' share (seeds 1, 2), while
    # the training probe with its digits removed scored chance (0.125 of 8 classes)
    state = {}
    found = [on_object_findings(state, v)[:1] for v in (0.076, 0.084, 0.025, 0.14)]
    assert found == [[], [], [], []]  # one log, and only 0.05 under the first: noise
    state, needed = {}, (0.125, 8)
    found = [on_object_findings(state, v, without=needed) for v in (0.32, 0.2, 0.14, 0.15)]
    assert all(kind != "cam_off_object" for f in found for kind, *_ in f)
    state, kept = {}, (0.9, 8)  # the class kept without the object: read elsewhere
    values = (0.32, 0.14, 0.15)
    kinds = [[k for k, *_ in on_object_findings(state, v, without=kept)] for v in values]
    assert [k for k in kinds if "cam_off_object" in k] == [kinds[2]]


def test_on_object_removal_fills_with_the_background_not_a_frame_round_the_image():
    # hunt 30: a bright 2-pixel frame on every image set the fill to its colour, leaving
    # the digit's outline, which the model still read: "reads the class from outside the
    # object" on a healthy run
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, :2], x[:, :, -2:], x[:, :, :, :2], x[:, :, :, -2:] = 1.0, 1.0, 1.0, 1.0
    x[:, :, 6:10, 6:10] = 0.8  # the object
    removed = without_object(x, x[:, 0] == 0.8, grow=0)
    assert float(removed[:, :, 6:10, 6:10].abs().max()) == 0.0  # the background's
    assert torch.equal(removed[:, :, :2], x[:, :, :2])  # the frame itself stays


def test_on_object_removal_on_noise_fills_with_noise_not_a_flat_patch():
    # setups hunt 61: on a noisy background a flat fill marked the object's place; a model
    # reading that place kept 53% of its class (22% with background noise there): a
    # "reads the class from outside the object" problem on a healthy run
    x = 0.3 * torch.randn(4, 1, 20, 20, generator=torch.Generator().manual_seed(1))
    x[:, :, 2:8, 12:18] += 1.5  # the object
    mask = torch.zeros(4, 20, 20, dtype=torch.bool)
    mask[:, 2:8, 12:18] = True
    state = torch.random.get_rng_state()
    removed = without_object(x, mask, grow=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # a generator of its own
    assert torch.equal(removed, without_object(x, mask, grow=0))  # the same fill every time
    hole = removed[:, 0, 2:8, 12:18]
    ground = x[:, 0, 10:20, 0:10]
    assert abs(float(hole.std()) - float(ground.std())) < 0.05  # noise like the background's
    assert abs(float(hole.mean()) - float(ground.mean())) < 0.1
    assert torch.equal(removed[:, 0, 10:], x[:, 0, 10:])  # the rest as it was


def test_on_object_a_map_too_coarse_for_the_cam_still_runs_the_object_removal():
    # hunt 51: a timm ResNet-10t on 28 px digits (a 2x2 map) whose training images alone
    # carried a square placed by the label kept 62% of its training probe right with the
    # digits removed: no shortcut check ran ("the map is too coarse to place the object")
    state, areas = {}, (0.17, 0.17)
    found = [on_object_findings(state, 0.3, 0.3, areas, hw=(2, 2), without=(kept, 10))
             for kept in (0.125, 0.625, 0.625)]  # fmt: skip
    assert found[:2] == [[], []]
    ((kind, message, figures),) = found[2]
    assert kind == "cam_shortcut" and figures["splits"] == "outside"
    assert "still classifies 62% of them right (chance 10%), 2 logs in a row." in message
    assert "Grad-CAM puts" not in message and "on_object" not in figures
    # the CAM's own rules stay off on such a map; so does removal where the object is most
    # of the image, and a model that needs its object
    for without, shares in (((0.125, 10), areas), ((0.625, 10), (0.6, 0.6))):
        state = {}
        assert not any(on_object_findings(state, 0.05, 0.3, shares, hw=(2, 2), without=without)
                       for _ in range(4))  # fmt: skip
