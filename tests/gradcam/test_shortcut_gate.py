"""The shortcut findings read a position-preserving CAM and stay silent when the model's
eval-mode predictions explain nothing (wrong on its training probe, BatchNorm mismatch)."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import Finding, checks_of, findings_of, report
from lightning_cnnviz.core.tokens import Layout
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from lightning_cnnviz.gradcam.gates import (
    MAX_OBJECT_SHARE,
    MIN_OBJECT_CELLS,
    MIN_PROBE_ACC,
    area_blocker,
)
from lightning_cnnviz.gradcam.shortcut import on_object_findings
from lightning_cnnviz.gradcam.shortcut_rules import AREA_RATIO
from tests.contract.zoo import ZooData
from tests.gradcam.test_gradcam import fit, scalars
from tests.monitors import TinyCNN, loaders
from tests.monitors import fit as monitors_fit
from tests.tb import events, texts

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

AREAS = (0.15, 0.14)  # a digit's share of a 28x28 image


def kinds(found):
    return [(kind, figures.get("splits")) for kind, _, figures in found]


def test_shortcut_gate_skips_logs_whose_probe_is_mostly_wrong():
    state = {}
    # the BatchNorm-lagging ResNet: CAM off the object while 2 of 8 probe images are right
    for train, val in [(0.27, 0.30), (0.01, 0.05), (0.03, 0.05)]:
        assert on_object_findings(state, train, val, AREAS, accuracy=0.25) == []
    assert state == {}  # skipped logs leave no trace: the first meaningful log is the baseline
    found = on_object_findings(state, 0.03, 0.05, AREAS, accuracy=MIN_PROBE_ACC)
    assert kinds(found) == [] and state["first"] == 0.03  # one low log: not yet a pattern
    found = on_object_findings(state, 0.03, 0.05, AREAS, accuracy=1.0)
    assert kinds(found) == [("cam_shortcut", "both")]


def test_shortcut_both_splits_threshold_between_healthy_and_cue_runs():
    # measured (HiResCAM, 8 probe digits): healthy 1.6-2.1x the area share, cue 0.90-0.96x
    healthy = [(1.63 * AREAS[0], 1.75 * AREAS[1]), (1.88 * AREAS[0], 1.99 * AREAS[1])]
    cue = [(0.92 * AREAS[0], 0.90 * AREAS[1]), (0.96 * AREAS[0], 0.96 * AREAS[1])]
    assert 0.96 < AREA_RATIO < 1.63
    state = {}
    assert [kinds(on_object_findings(state, *p, AREAS, 1.0)) for p in healthy * 2] == [[]] * 4
    state = {}
    found = [kinds(on_object_findings(state, *p, AREAS, 1.0)) for p in cue]
    assert found == [[], [("cam_shortcut", "both")]]


@pytest.mark.parametrize("cause", ["bn_mismatch", "not_learning", "divergence"])
def test_shortcut_monitor_silent_after_a_cause_that_explains_the_cam(cause):
    run = type("Run", (), {"global_step": 50, "current_epoch": 1})()
    report(run, Finding("overfitting", cause, 40, 1, "the true cause"))
    monitor = GradCAMMonitor()
    for _ in range(3):
        monitor._check_on_object(run, 0.01, 0.02, areas=AREAS, accuracy=1.0)
    assert [f.kind for f in findings_of(run)] == [cause]


def test_shortcut_monitor_gate_uses_the_accuracy_it_is_given():
    run = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    monitor = GradCAMMonitor()
    for step in range(3):
        run.global_step = step
        monitor._check_on_object(run, 0.02, 0.02, areas=AREAS, accuracy=0.125)
    assert findings_of(run) == []
    with pytest.warns(UserWarning, match="training and validation images alike"):
        for step in (3, 4):
            run.global_step = step
            monitor._check_on_object(run, 0.02, 0.02, areas=AREAS, accuracy=0.875)
    assert [(f.kind, f.step) for f in findings_of(run)] == [("cam_shortcut", 4)]


def test_shortcut_hirescam_on_object_logged_for_plain_gradcam_only(tmp_path):
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified=False)
    fit(tmp_path / "gradcam", monitor)
    acc = events(tmp_path / "gradcam" / "tb")
    for split in ("train", "val"):
        hires = scalars(acc, f"gradcam/{split}/on_object_hirescam")
        plain = scalars(acc, f"gradcam/{split}/on_object")
        assert [s for s, _ in hires] == [2, 4] and all(0 <= v <= 1 for _, v in hires)
        assert [v for _, v in hires] != [v for _, v in plain]  # another map, not a copy
    assert monitor._probe_acc is not None and 0.0 <= monitor._probe_acc <= 1.0
    hires_monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified=False,
                                   method="hirescam")  # fmt: skip
    fit(tmp_path / "hirescam", hires_monitor)
    tags = events(tmp_path / "hirescam" / "tb").Tags()["scalars"]
    assert "gradcam/train/on_object" in tags and "gradcam/train/on_object_hirescam" not in tags


def test_shortcut_monitor_probe_accuracy_is_the_eval_mode_one(tmp_path):
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=8, misclassified=False)
    _, trainer = fit(tmp_path, monitor)
    assert monitor._probe_acc is not None
    probe = monitor.probe(trainer, "train")
    model = trainer.lightning_module.eval()
    with torch.no_grad():
        expected = float((model(probe.images).argmax(1) == probe.labels).float().mean())
    assert monitor._probe_acc == pytest.approx(expected)


def test_shortcut_both_splits_rule_needs_a_map_finer_than_the_object():
    low = (0.9 * AREAS[0], 0.9 * AREAS[1])  # at the area share: what any 2x2 map gives
    coarse, fine = {}, {}
    for _ in range(3):  # resnet18 on 32x32 images: a 2x2 map, the object 0.6 of a cell
        assert on_object_findings(coarse, *low, AREAS, 1.0, cells=0.15 * 4) == []
    found = [kinds(on_object_findings(fine, *low, AREAS, 1.0, cells=0.15 * 49)) for _ in "ab"]
    assert found == [[], [("cam_shortcut", "both")]]  # a 7x7 map: 7 cells of object
    assert MIN_OBJECT_CELLS == 4.0


def test_shortcut_monitor_records_whether_the_both_splits_check_ran():
    run = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    monitor = GradCAMMonitor()
    monitor._trainer_ref, monitor.selected = run, {"layer3": nn.Identity()}
    monitor._layouts = {"layer3": Layout("nchw", 0, (2, 2))}
    cells, hw = monitor._object_cells((0.107, 0.099))
    assert (cells, hw) == (pytest.approx(0.396), (2, 2))
    check = checks_of(run)[("GradCAMMonitor", "shortcut on both splits")]
    assert not check.ran and "2x2 map is too coarse to place the object" in check.why
    monitor._layouts = {"layer3": Layout("nchw", 0, (7, 7))}
    monitor._object_cells((0.05, 0.05))  # a small object on a fine map: on 2.5 cells
    check = checks_of(run)[("GradCAMMonitor", "shortcut on both splits")]
    assert not check.ran and "7x7 map is too coarse: the object covers 2.5 of its" in check.why
    assert monitor._object_cells((0.15, 0.14))[0] == pytest.approx(6.86)
    assert checks_of(run)[("GradCAMMonitor", "shortcut on both splits")].ran


def test_shortcut_train_vs_val_needs_the_object_on_enough_cells():
    # timm resnet18 at 32x32 (held out, healthy): a 2x2 map, the object on 1.8 cells
    state, areas = {}, (0.39, 0.46)
    for _ in range(3):
        assert on_object_findings(state, 0.33, 0.47, areas, 1.0, cells=1.8, hw=(2, 2)) == []
    assert "2x2 map is too coarse to place the object" in area_blocker(areas, hw=(2, 2))
    state = {}  # on a 7x7 map, 0.33 on objects of 0.39 reads 0.39 on val's 0.46: no gap
    found = [on_object_findings(state, 0.33, 0.47, areas, 1.0, 19.0, (7, 7)) for _ in range(2)]
    assert found == [[], []]
    state = {}  # 0.25 reads 0.29 there, 0.63x val's: a shortcut
    found = [on_object_findings(state, 0.25, 0.47, areas, 1.0, 19.0, (7, 7)) for _ in range(2)]
    assert [[kind for kind, *_ in f] for f in found] == [[], ["cam_shortcut"]]
    assert "(objects covering 0.39 and 0.46 of the image)" in found[1][0][1]


def test_shortcut_both_splits_rule_needs_an_object_smaller_than_the_image():
    # inputs shifted bright (the BatchNorm scenario's +4): every pixel is "object"
    state, whole = {}, (1.0, 1.0)
    for _ in range(3):
        assert on_object_findings(state, 1.0, 1.0, whole, 1.0, cells=49.0) == []
    assert "covers 100% of the image" in area_blocker(whole)
    assert area_blocker((MAX_OBJECT_SHARE, 0.3)) == ""
    # an object over a third of the image: the both-splits rule stays out, the others run
    big, state = (0.39, 0.46), {}
    assert area_blocker(big) == "" and "more than a third" in area_blocker(big, 6.2, both=True)
    for _ in range(3):  # healthy ConvNeXt CAMs at 1.05x the share of coloured shapes
        assert on_object_findings(state, 0.41, 0.49, big, 1.0, cells=6.2) == []
    state, third = {}, (0.3, 0.3)  # the same CAMs on an object of 30%: at chance, found
    found = [on_object_findings(state, 0.3, 0.3, third, 1.0, cells=6.2) for _ in range(2)]
    assert [[kind for kind, *_ in f] for f in found] == [[], ["cam_shortcut"]]
    run = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    monitor = GradCAMMonitor()
    monitor._trainer_ref, monitor.selected = run, {"pool2": nn.Identity()}
    monitor._layouts = {"pool2": Layout("nchw", 0, (7, 7))}
    monitor._object_cells(whole)
    check = checks_of(run)[("GradCAMMonitor", "shortcut on both splits")]
    assert not check.ran and "foreground_threshold" in check.why


class DarkZooData(ZooData):
    """The zoo's blobs on a dark background: the foreground mask finds the blob alone."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("train_set", "val_set"):
            data = getattr(self, name)
            x, y = getattr(data, "data", data).tensors  # the training set's augmentation off
            setattr(self, name, TensorDataset(torch.where(x > 1.0, x, 0.0), y))


class InvertedZooData(ZooData):
    """The zoo's blobs dark on noise: nothing stands out bright, every image is all object."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("train_set", "val_set"):
            data = getattr(self, name)
            x, y = getattr(data, "data", data).tensors
            setattr(self, name, TensorDataset(-x, y))


def test_shortcut_summary_names_each_check_and_why_one_did_not_run(tmp_path):
    _, trainer = fit(tmp_path / "on", GradCAMMonitor(every_n_steps=2), data=DarkZooData())
    checks = checks_of(trainer)
    for name in ("CAM on the object", "shortcut train vs val"):
        assert checks[("GradCAMMonitor", name)].ran, name
    # the blobs bright on noise: found above the noise, not the noise (76% of the image once)
    _, trainer = fit(tmp_path / "noisy", GradCAMMonitor(every_n_steps=2))
    assert checks_of(trainer)[("GradCAMMonitor", "CAM on the object")].ran
    # dark blobs: nothing bright stands out, no object to tell from the rest
    _, trainer = fit(tmp_path / "dark", GradCAMMonitor(every_n_steps=2), data=InvertedZooData())
    for name in ("CAM on the object", "shortcut train vs val"):
        check = checks_of(trainer)[("GradCAMMonitor", name)]
        assert not check.ran and "no object to tell from the rest" in check.why
        covers = re.search(r"the foreground mask covers (\d+)% of the image", check.why)
        assert covers and int(covers[1]) >= 90  # all object, but where a noise speck stood out
    off = GradCAMMonitor(every_n_steps=2, foreground_threshold=None)
    _, trainer = fit(tmp_path / "off", off)
    check = checks_of(trainer)[("GradCAMMonitor", "CAM on the object")]
    assert not check.ran and "`foreground_threshold`" in check.why
    (summary,) = texts(events(tmp_path / "off"), "cnnviz/summary")
    said = "Checks that did not run: GradCAMMonitor/CAM on the object, class kept without the "
    assert said + "object (needs `foreground" in summary


def test_shortcut_class_kept_without_the_object_needs_a_probe_of_three_classes(tmp_path):
    # setups hunt 60: a probe of 4 images of 2 classes (of 4 outputs) judged against 1/4: a
    # model at 25% on images without an object told "reads the class from outside"
    two = []
    for loader in loaders():
        x, y = loader.dataset.tensors
        keep = y >= 2
        two.append(DataLoader(TensorDataset(x[keep], y[keep]), batch_size=8))
    trainer, _, _ = monitors_fit(tmp_path, [GradCAMMonitor(every_n_steps=1)], data=two)
    check = checks_of(trainer)[("GradCAMMonitor", "class kept without the object")]
    assert not check.ran
    assert check.why == (
        "the training probe holds images of 2 class(es) only: too few to tell a cue from chance"
    )
    assert not [f for f in findings_of(trainer) if f.kind == "cam_shortcut"]


class MultiLabel(TinyCNN):
    """4 binary attributes with BCE: the data carries no class index."""

    def _step(self, batch, stage):
        loss = F.binary_cross_entropy_with_logits(self(batch[0]), batch[1])
        self.log(f"{stage}/loss", loss)
        return loss


def test_shortcut_without_class_labels_is_not_judged(tmp_path):
    multi_hot = [
        DataLoader(TensorDataset(x, F.one_hot(y, 4).float()), batch_size=8)
        for x, y in (loader.dataset.tensors for loader in loaders())
    ]
    trainer, _, _ = monitors_fit(
        tmp_path, [GradCAMMonitor(every_n_steps=1)], model=MultiLabel(), data=multi_hot
    )
    assert not [f for f in findings_of(trainer) if f.source == "gradcam"]
    for name in ("CAM on the object", "CAM fixed on one place"):
        check = checks_of(trainer)[("GradCAMMonitor", name)]
        assert not check.ran and check.why.startswith(
            "needs class labels on the training probe (its targets are one-hot vectors): "
        )


def test_shortcut_train_vs_val_reads_the_cam_on_objects_of_one_size_and_waits_while_needed():
    # a healthy network-in-network CNN (diffuse CAM): the train probe's digits cover 0.134
    # of the image, the val probe's 0.192; on_object 0.25 vs 0.41 is 1.9x and 2.1x the share
    state, areas = {}, (0.134, 0.192)
    for train, val in ((0.25, 0.40), (0.24, 0.41), (0.25, 0.41)):
        assert on_object_findings(state, train, val, areas, 1.0, 49.0, (7, 7)) == []
    # a CAM lower on training images, from a model that loses its class without the object
    # (12% right on 10 classes): no cue elsewhere, nothing said; once it keeps them: found
    state, low = {}, (0.08, 0.41)
    for _ in range(3):
        assert on_object_findings(state, *low, areas, 1.0, 49.0, (7, 7), (0.12, 10)) == []
    found = [on_object_findings(state, *low, areas, 1.0, 49.0, (7, 7), (0.9, 10)) for _ in "ab"]
    assert [[kind for kind, *_ in f] for f in found] == [[], ["cam_shortcut"]]
    assert found[1][0][2]["splits"] == "train"
