"""Logged val metrics that are not the model's: the rule, the detector's precedence, a run."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import val_source
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from tests.monitors import TinyCNN
from tests.overfitting.runs import Net, fit_monitor, one_hot_set


def evaluations(rows):
    return [
        Evaluation(50 * (i + 1), i, classes=10.0, probe_size=128.0, **row)
        for i, row in enumerate(rows)
    ]


def test_val_source_logged_accuracy_far_below_the_probe_for_two_evaluations():
    # f_ema_decay_0p9999 s0 (held out): an EMA of the weights validated, logged 12-17%
    # while the model scored 96.9% on the val probe
    ema = evaluations([dict(val_acc=a, probe_acc_val=p) for a, p in [(0.12, 0.9), (0.14, 0.97)]])
    assert val_source.val_metrics_differ(ema[:1]) is None  # one evaluation: waits
    verdict = val_source.val_metrics_differ(ema)
    assert (verdict.since.step, verdict.detected.step) == (50, 100)
    assert verdict.figures["logged_acc"] == 0.14 and verdict.figures["probe_acc"] == 0.97
    # within the probe's noise, or the logged accuracy above a balanced probe's: quiet
    close = evaluations([dict(val_acc=0.82, probe_acc_val=0.9)] * 3)
    above = evaluations([dict(val_acc=0.95, probe_acc_val=0.55)] * 3)  # commoner classes
    assert val_source.val_metrics_differ(close) is None
    assert val_source.val_metrics_differ(above) is None


def test_val_source_non_finite_logged_loss_with_a_finite_probe():
    # f_val_nan_pixel (held out): one NaN pixel in the val set, NaN val loss at every
    # validation while the model's own cross-entropy on the val probe was 0.1
    rows = [dict(val_loss=math.nan, val_acc=0.96, probe_loss_val=0.1, probe_acc_val=0.97)] * 2
    verdict = val_source.val_metrics_differ(evaluations(rows))
    assert verdict.figures["non_finite"] is True
    diverged = [dict(val_loss=math.nan, probe_loss_val=math.nan)] * 2  # the model itself
    assert val_source.val_metrics_differ(evaluations(diverged)) is None


def test_val_source_detector_tells_it_and_the_gap_waits():
    # train accuracy 99%, the logged val 13%: "the splits differ" read the EMA's figures
    rows = [
        dict(train_acc=0.99, val_acc=0.13, val_loss=2.3, train_loss=0.05, probe_acc_val=0.97)
    ] * 3
    detector, kinds = Detector(), []
    for ev in evaluations(rows):
        kinds += [c.verdict.kind for c in detector.update(ev)]
    assert kinds == ["val_metrics_differ"]
    (verdict,) = detector.active
    assert "is not this model's: it scores 97.0% on the val probe" in headline(verdict)
    assert detector.checks_ran()["val metrics of this model"]
    # a NaN val loss throughout: the overfitting check did not run
    nan = Detector()
    for ev in evaluations([dict(val_loss=math.nan, probe_loss_val=0.1)] * 2):
        nan.update(ev)
    assert not nan.checks_ran()["overfitting"]


def fit_four_classes(tmp_path, module, epochs):
    """Fit ``module(net, lr)`` on four one-pixel classes under ``OverfittingMonitor``."""
    torch.manual_seed(0)
    train = DataLoader(one_hot_set([128] * 4, seed=0), batch_size=32, shuffle=True)
    val = DataLoader(one_hot_set([64] * 4, seed=1), batch_size=64)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    return fit_monitor(tmp_path, module(net, lr=0.05), train, val, epochs=epochs)


class EmaValidated(Net):
    """``Net`` validating an exponential moving average of its weights (decay 0.9999)."""

    def __init__(self, net, lr):
        super().__init__(net, lr)
        self.ema = copy.deepcopy(net).requires_grad_(False)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                e.lerp_(p, 1e-4)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.ema(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), on_epoch=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)


def test_val_source_found_in_a_run_that_validates_an_ema(tmp_path):
    trainer, said = fit_four_classes(tmp_path, EmaValidated, epochs=4)
    found = {f.kind: f for f in findings_of(trainer)}
    assert found["val_metrics_differ"].severity == "problem"
    figures = found["val_metrics_differ"].figures
    assert figures["probe_acc"] - figures["logged_acc"] >= val_source.LOGGED_BELOW
    assert figures["probe_acc"] == pytest.approx(1.0)
    assert "generalisation_gap" not in found and "overfitting" not in found
    # its batches reach no layer the optimiser trains: another module validated, stalled
    assert any("does not catch up in this run" in m for m in said)


def test_val_source_loop_check_is_paired_and_one_sided():
    y = torch.arange(4).repeat(32)  # 128 probe images
    right = nn.functional.one_hot(y, 4).float()
    wrong = right.roll(1, 1)
    assert val_source.loop_check(right, right, y) == {}
    # the loop wrong on 20 of 128 images the own pass gets right: past the paired noise
    loop = torch.cat([wrong[:20], right[20:]])
    found = val_source.loop_check(loop, right, y)
    assert found["own_acc"] == 1.0 and found["loop_acc"] == pytest.approx(108 / 128)
    # 3 images apart: noise; the loop better than the own pass (test-time augmentation): quiet
    assert val_source.loop_check(torch.cat([wrong[:3], right[3:]]), right, y) == {}
    assert val_source.loop_check(right, loop, y) == {}


class NegatedInValidation(Net):
    """``Net`` whose ``validation_step`` feeds the model its images negated (a val transform)."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._step((-x, y), "val")


def test_val_source_found_one_validation_after_the_step_changes_the_images(tmp_path):
    trainer, _ = fit_four_classes(tmp_path, NegatedInValidation, epochs=3)
    found = {f.kind: f for f in findings_of(trainer)}
    finding = found["val_metrics_differ"]
    assert finding.step == 32 and finding.figures["since_step"] == 16  # since the first
    assert finding.figures["own_acc"] - finding.figures["loop_acc"] > 0.5
    assert "does not score the images as the dataset gives them" in finding.message
    assert "bn_mismatch" not in found and "generalisation_gap" not in found


def _looped(own, loop, step):
    check = {"own_acc": own, "loop_acc": loop, "own_only": own - loop, "loop_only": 0.0}
    return Evaluation(step, step // 32, val_acc=loop, probe_acc_val=own, loop_check=check)


def test_val_source_loop_catching_up_waits_a_gap_that_stays_is_told():
    # hunt 25: an EMA at decay 0.99, validated (Lightning's `WeightAveraging` too), trailed
    # the model by 30-50 points at the first validation and got a standing problem on a
    # healthy run (95% val); it trailed by 16 at the second and agreed at the third
    ema = [_looped(0.75, 0.453, 32), _looped(0.922, 0.758, 64)]
    assert val_source.val_metrics_differ(ema) is None
    agreed = Evaluation(96, 2, val_acc=0.90, probe_acc_val=0.93, loop_check={})
    assert val_source.val_metrics_differ([*ema, agreed]) is None
    closer = [*ema, _looped(0.977, 0.859, 96)]  # still parted, still closing: waits
    assert val_source.val_metrics_differ(closer) is None
    lagging = [*ema, _looped(0.93, 0.80, 96)]  # still parted, no longer closing: told
    assert val_source.val_metrics_differ(lagging).figures["loop_acc"] == 0.80
    assert val_source.val_metrics_differ([ema[0], _looped(0.94, 0.70, 64)]) is not None
    transformed = [_looped(0.97, 0.63, 32), _looped(0.98, 0.66, 64)]  # a gap that stays
    verdict = val_source.val_metrics_differ(transformed)
    assert verdict.since.step == 32 and verdict.detected.step == 64


def test_val_source_average_whose_gap_grows_then_closes_waits():
    # hunt 77: timm's ModelEmaV3(0.99) validated on a resnet10t under SGD 0.1 trailed the
    # model by 42 points, then 66 (the model jumped to 99%), 38 and 13; told a problem at
    # the second validation of a healthy run (98.5% val)
    rows = [(0.211, 0.633), (0.328, 0.992), (0.587, 0.969), (0.858, 0.984)]
    ema = evaluations([dict(val_acc=a, probe_acc_val=p) for a, p in rows])
    assert all(val_source.val_metrics_differ(ema[:n]) is None for n in range(1, 5))
    # a transform in the step: the logged accuracy rises with the model, its gap stays
    rows = [(0.3, 0.6), (0.5, 0.9), (0.6, 0.97), (0.62, 0.98)]
    moved = evaluations([dict(val_acc=a, probe_acc_val=p) for a, p in rows])
    assert val_source.val_metrics_differ(moved[:2]) is None  # growing with the model
    assert val_source.val_metrics_differ(moved[:3]).detected.step == 150
    # an average that does not catch up (its accuracy flat) is told at the second
    flat = evaluations([dict(val_acc=a, probe_acc_val=p) for a, p in [(0.2, 0.6), (0.22, 0.95)]])
    assert val_source.val_metrics_differ(flat).detected.step == 100


def test_val_source_another_module_validated_is_a_note_until_it_stalls():
    # hunt 79: timm's ModelEmaV3(0.99) over a BatchNorm CNN, validated: 10-17% logged for
    # four validations while the model learnt, then it caught up; told a problem, and
    # "the splits differ", "the loss is fed probabilities" before it
    rows = [(0.104, 0.45, 0.125), (0.094, 0.71, 0.25), (0.168, 0.86, 0.375)]
    ema = evaluations(
        [dict(val_acc=a, probe_acc_val=p, run_share=s, val_elsewhere=True) for a, p, s in rows]
    )
    verdict = val_source.val_metrics_differ(ema)
    assert verdict.severity == "note" and verdict.figures["elsewhere"]
    assert "`validation_step` scores another module than the one trained" in headline(verdict)
    # half the run gone and no higher than when they parted: it does not catch up
    late = [*ema, *evaluations([dict(val_acc=0.11, probe_acc_val=0.9, run_share=0.5,
                                     val_elsewhere=True)])]  # fmt: skip
    stalled = val_source.val_metrics_differ(late)
    assert stalled.severity == "problem" and stalled.figures["stalled"]
    assert "does not catch up in this run" in headline(stalled)
    # a copy caught up with the model (its accuracy near the model's): its loss is read,
    # and a loss fed probabilities told (hunt 81: held back all run under an EMA)
    row = dict(train_acc=0.99, val_acc=0.62, val_loss=1.6, train_loss=0.05, probe_acc_val=0.7,
               probe_loss_val=0.3, probe_ce_probs_val=1.6)  # fmt: skip
    for elsewhere, told in ((False, ["loss_mismatch"]), (True, ["loss_mismatch"])):
        detector = Detector()
        rows = evaluations([{**row, "val_elsewhere": elsewhere}] * 3)
        assert [c.verdict.kind for ev in rows for c in detector.update(ev)] == told


class ValidatesAnAverage(TinyCNN):
    """TinyCNN whose ``validation_step`` scores an average of its weights (a copy of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.average = [TinyCNN()]  # held in a list: not a submodule, not trained
        self.average[0].load_state_dict(self.state_dict())

    def on_train_batch_end(self, outputs, batch, batch_idx):
        with torch.no_grad():
            for a, p in zip(self.average[0].parameters(), self.parameters(), strict=True):
                a.lerp_(p, 0.5)

    def validation_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        logits = self.average[0].eval()(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), on_epoch=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)


def test_val_source_a_run_validating_another_module_reads_it(tmp_path):
    from lightning_cnnviz.overfitting.callback import OverfittingMonitor
    from tests.monitors import fit as fit_tiny

    monitor = OverfittingMonitor(num_samples=32)
    fit_tiny(tmp_path, [monitor], model=ValidatesAnAverage())
    history = monitor.detector.history
    assert history and all(e.val_elsewhere for e in history)
    fit_tiny(tmp_path / "own", [own := OverfittingMonitor(num_samples=32)], model=TinyCNN())
    assert own.detector.history and not any(e.val_elsewhere for e in own.detector.history)


class TwoStems(TinyCNN):
    """TinyCNN with an auxiliary stem registered first, used by a training-only loss."""

    def __init__(self) -> None:
        super().__init__()
        self.aux = nn.Conv2d(1, 4, 3, padding=1)
        self._modules = {"aux": self._modules.pop("aux"), **self._modules}  # registered first

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss + 0.01 * self.aux(batch[0]).square().mean()


def test_val_source_averaging_callbacks_and_trained_layers_tell_another_module(tmp_path):
    # hunt 80: Lightning's EMAWeightAveraging swaps the average into the model itself (told
    # val_metrics_differ, "fed probabilities", the splits differ); a net whose first conv
    # serves a training-only head was taken for one validating a copy
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from lightning_cnnviz.overfitting.callback import OverfittingMonitor
    from tests.monitors import fit as fit_tiny

    swapped = OverfittingMonitor(num_samples=32)
    fit_tiny(tmp_path / "ema", [swapped, EMAWeightAveraging(decay=0.9)], model=TinyCNN())
    assert swapped.detector.history and all(e.val_elsewhere for e in swapped.detector.history)
    stems = OverfittingMonitor(num_samples=32)
    fit_tiny(tmp_path / "stems", [stems], model=TwoStems())
    assert stems.detector.history and not any(e.val_elsewhere for e in stems.detector.history)


def test_val_source_logged_metrics_that_never_move_while_the_model_does():
    # hunt 80: a distillation run validating its frozen teacher by mistake logged 0.7730 at
    # all 8 validations while the student's own val accuracy moved: nothing was told
    still = [dict(val_loss=0.709, val_acc=0.773, probe_acc_val=a, probe_loss_val=p,
                  val_elsewhere=True)
             for a, p in ((0.4, 2.16), (0.55, 1.95), (0.62, 1.80), (0.66, 1.70))]  # fmt: skip
    detector = Detector()
    changes = [c for ev in evaluations(still) for c in detector.update(ev)]
    (told,) = [c.verdict for c in changes]
    assert told.kind == "val_metrics_differ" and told.figures["unchanged"]
    assert told.detected.step == 150 and told.severity == "problem"
    assert "have not changed at all in 3 validations" in headline(told)
    # the same figures from a model that does not move either (a rate of 0): no finding
    frozen = [{**row, "probe_loss_val": 1.8, "probe_acc_val": 0.62} for row in still]
    assert val_source.val_metrics_differ(evaluations(frozen)) is None
    # the model itself validated, logging every third validation (Lightning keeps the
    # value it did not log): no finding (hunt 81)
    own = [{**row, "val_elsewhere": False} for row in still]
    assert val_source.val_metrics_differ(evaluations(own)) is None
    # the logged loss moving again withdraws it
    moved = evaluations([*still, dict(val_loss=0.65, val_acc=0.7, probe_acc_val=0.7,
                                      probe_loss_val=1.6)])[-1]  # fmt: skip
    assert [c.change for c in detector.update(moved)] == ["gone"]


def test_val_source_compiled_and_functional_nets_are_not_read_as_another_module(tmp_path):
    # setups hunt 58: a torch.compile'd or TorchScript net's hooks never fire inside its
    # graph; hunt 81: a net calling its ParameterList through F.conv2d runs no layer's
    # forward: each read as validating another module, its misfed loss held back
    from lightning_cnnviz.overfitting.callback import OverfittingMonitor
    from lightning_cnnviz.overfitting.val_reach import tappable
    from tests.monitors import fit as fit_tiny

    assert not tappable(torch.jit.script(nn.Linear(2, 2))) and tappable(nn.Linear(2, 2))

    class Functional(TinyCNN):
        def __init__(self) -> None:
            super().__init__()
            conv, fc = self.conv1, self.fc
            self.w = nn.ParameterList([conv.weight, conv.bias, fc.weight, fc.bias])
            del self.conv1, self.bn1, self.conv2, self.bn2, self.fc  # their weights in `w`

        def forward(self, x):
            x = nn.functional.conv2d(x, self.w[0], self.w[1], padding=1)
            x = nn.functional.max_pool2d(nn.functional.relu(x), 4)
            return nn.functional.linear(x.flatten(1), self.w[2], self.w[3])

    monitor = OverfittingMonitor(num_samples=32)
    fit_tiny(tmp_path, [monitor], model=Functional())
    assert monitor.reach_seen is False  # the taps see no call: they cannot tell
    assert monitor.detector.history and not any(e.val_elsewhere for e in monitor.detector.history)
