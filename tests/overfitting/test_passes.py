"""Which probe passes an evaluation runs: the BatchNorm screen and the train probe's cadence,
read back from what the monitor wrote to TensorBoard (and from ``passes.plan`` itself)."""

import lightning as L
import pytest
import torch
from torch import nn

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import bn_levels, passes
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from tests.overfitting.runs import Net, fit
from tests.tb import events


class Centre(nn.Module):
    """Inputs around zero (the blobs sit around 3): running statistics right from the start."""

    def forward(self, x):
        return x - 3.0


def bn_net() -> tuple[nn.Module, nn.BatchNorm1d]:
    norm = nn.BatchNorm1d(16)
    layers = [Centre(), nn.Flatten(), nn.Linear(16, 16), norm, nn.ReLU(), nn.Linear(16, 2)]
    return nn.Sequential(*layers), norm


class BreakRunningStats(L.Callback):
    """From validation ``epoch`` on, eval mode is broken: running means far off, frozen."""

    def __init__(self, norm: nn.BatchNorm1d, epoch: int) -> None:
        self.norm, self.epoch = norm, epoch

    def on_validation_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            self.norm.running_mean += 20.0
            self.norm.momentum = 0.0  # training no longer brings them back


def steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_passes_batch_stats_skipped_while_the_screen_is_quiet_then_run_when_the_gap_opens(
    tmp_path,
):
    torch.manual_seed(0)
    net, norm = bn_net()
    monitor = OverfittingMonitor(num_samples=64)
    trainer, _ = fit(tmp_path, Net(net, lr=0.05), [monitor, BreakRunningStats(norm, 2)], epochs=4)
    acc = events(tmp_path / "tb")
    evaluated = steps(acc, "overfitting/bn_screen")
    assert evaluated == [4, 8, 12, 16]  # the screen looked at every evaluation
    assert [e.value < 0.05 for e in acc.Scalars("overfitting/bn_screen")][:2] == [True, True]
    # epoch 0: the first pass (the screen's baseline); epoch 1 healthy: no pass; from
    # epoch 2 the logged train accuracy (batch statistics) stands far above the eval-mode
    # probe's, and the pass runs
    assert steps(acc, "overfitting/bn_gap_acc") == [4, 12, 16]
    h = monitor.detector.history
    assert [e.bn_screen is not None for e in h] == [False, True, False, False]
    assert [bn_levels.parted(e) for e in h] == [False, False, True, True]
    (finding,) = [f for f in findings_of(trainer) if f.kind == "bn_mismatch"]
    # statistics frozen (momentum 0): nothing to catch up, told at the first parting
    assert (finding.figures["since_epoch"], finding.epoch) == (2, 2)


def test_passes_batch_stats_run_only_where_the_screen_reaches_its_bar_on_a_healthy_model(
    tmp_path,
):
    torch.manual_seed(0)
    net, _ = bn_net()
    monitor = OverfittingMonitor(num_samples=64)
    trainer, _ = fit(tmp_path, Net(net, lr=0.05), [monitor], epochs=6)
    acc = events(tmp_path / "tb")
    screen = acc.Scalars("overfitting/bn_screen")
    h = monitor.detector.history
    assert [e.step for e in screen] == [e.step for e in h] == [4, 8, 12, 16, 20, 24]
    bar = [0.5 * bn_levels.part_threshold(min(1, e.probe_acc_val + max(s.value, 0)), 64)
           for e, s in zip(h, screen, strict=True)]  # fmt: skip
    ran = [s.step for s, b in zip(screen, bar, strict=True) if s.value >= b - 1e-6]
    ran = sorted({h[0].step, *ran})  # the first pass always runs: the screen's baseline
    assert steps(acc, "overfitting/bn_gap_acc") == ran and len(ran) <= 3
    assert not [f for f in findings_of(trainer) if f.kind == "bn_mismatch"]
    assert all(bn_levels.parted(e) is False for e in h)  # every evaluation judged: none parted


@pytest.mark.parametrize("logged", [True, False])
def test_passes_train_probe_every_4th_evaluation_unless_it_stands_in(tmp_path, logged):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    key = "train/acc" if logged else "train/not_logged"
    monitor = OverfittingMonitor(num_samples=64, train_acc_key=key)
    fit(tmp_path, Net(net, lr=0.05), [monitor], epochs=6)
    acc = events(tmp_path / "tb")
    assert steps(acc, "overfitting/ece_val") == [4, 8, 12, 16, 20, 24]
    # logged train accuracy: the 2nd and 6th evaluations, and those whose val probe left a
    # class out (is it learnt on training images?); else the probe's stands in, always
    h = monitor.detector.history
    left_out = {e.step for e in h if e.ignored}
    want = sorted({8, 24} | left_out) if logged else [4, 8, 12, 16, 20, 24]
    assert steps(acc, "overfitting/ece_train") == want
    assert left_out == {4, 8}  # the first two validations: one class, barely trained
    assert [e.train_accuracy is not None for e in h] == [True] * 6


def test_passes_plan_runs_batch_stats_after_a_parted_evaluation():
    parted = Evaluation(0, 0, train_acc=0.9, probe_acc_val=0.5, probe_acc_bn=0.9, probe_size=128)
    # the screen alone would stay quiet (the gap looks like the one the pass measured)
    p = passes.plan([parted], train_acc=0.9, eval_acc=0.9, probe_size=128, batch_norm=True)
    assert p.batch_stats and p.why["batch_stats"].startswith("the latest pass found a mismatch")
    first = passes.plan([], train_acc=0.9, eval_acc=0.9, probe_size=128, batch_norm=True)
    assert first.batch_stats and first.why["batch_stats"].startswith("the first pass")
    sound = Evaluation(0, 0, train_acc=0.9, probe_acc_val=0.9, probe_acc_bn=0.9, probe_size=128)
    quiet = passes.plan([sound], train_acc=0.9, eval_acc=0.9, probe_size=128, batch_norm=True)
    assert (quiet.batch_stats, quiet.screen) == (False, 0.0)


def test_passes_cites_train_when_a_dry_run_reports_overfitting_first():
    vals = [2.0, 1.1, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05]
    evs = [Evaluation(10 * i, i, train_loss=1.0 / (i + 1), val_loss=v) for i, v in enumerate(vals)]
    detector, cited = Detector(), []
    for ev in evs:
        dry = detector.dry_run(ev)
        assert len(detector.history) == ev.epoch  # a dry run keeps nothing
        changes = detector.update(ev)
        assert [(c.change, c.verdict.kind) for c in dry] == [
            (c.change, c.verdict.kind) for c in changes
        ]
        cited.append(passes.cites_train(dry))
    # reported at epoch 6 ("new": the pass runs), then worse at 7 (the cadence decides)
    assert [c.change for c in changes] == ["worse"]
    assert cited == [False] * 6 + [True, False]


def test_passes_batch_stats_evaluation_carries_the_paired_counts(tmp_path):
    torch.manual_seed(0)
    net, norm = bn_net()
    monitor = OverfittingMonitor(num_samples=64)
    fit(tmp_path, Net(net, lr=0.05), [monitor, BreakRunningStats(norm, 2)], epochs=4)
    for e in monitor.detector.history:
        if e.probe_acc_bn is None:
            assert e.bn_only is None
            continue
        # training batches of 16: the pass sees the probe's first 48 of 64 images, and the
        # accuracies it compares (eval mode vs batch statistics) are counts of those
        assert e.bn_size == passes.pass_images(64, 16) == 48 and e.probe_size == 64
        for acc in (e.probe_acc_bn, e.bn_eval_acc, e.bn_only, e.eval_only):
            assert acc * 48 == pytest.approx(round(acc * 48), abs=1e-4)
        # the rule's paired error: the two passes differ by exactly these images
        assert e.bn_gap_acc == pytest.approx(e.bn_only - e.eval_only)
    assert monitor.detector.history[-1].bn_only > 0.1


def test_passes_pass_images_follow_the_training_batch():
    assert passes.pass_images(128, 64) == 128  # a batch of 64 or more: the whole probe
    assert passes.pass_images(128, 16) == 3 * 16
    assert passes.pass_images(128, 2) == passes.MIN_PASS
    assert passes.pass_images(20, 2) == 20
    assert passes.pass_images(128, None) == 128
