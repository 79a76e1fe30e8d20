"""A learning rate decayed far too early: the pure rule, the detector, a short real run."""

import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.lr_decay import decayed_early
from lightning_cnnviz.overfitting.text import diagnosis_text
from tests.overfitting.runs import Net, fit_monitor, one_hot_set
from tests.tb import events, texts


def run(losses, rates, start=2e-3, shares=None, **kw):
    shares = shares or [0.1 * (i + 1) for i in range(len(losses))]
    return [
        Evaluation(20 * (i + 1), i, val_loss=v, lr=lr, lr_initial=start, run_share=s, **kw)
        for i, (v, lr, s) in enumerate(zip(losses, rates, shares, strict=True))
    ]


CUT_AT_2 = [2e-3, 2e-5, 2e-5, 2e-5]


def test_lr_decay_cut_early_and_stalled_is_a_note():
    verdict = decayed_early(run([0.9, 0.45, 0.44, 0.45], CUT_AT_2))
    assert (verdict.kind, verdict.severity, verdict.since.step) == ("lr_decayed_early", "note", 40)
    assert verdict.figures["cut"] == 100.0 and verdict.figures["since_share"] == 0.2
    text = headline(verdict)
    assert "2e-05, 100x below its start (0.002), since epoch 1 (step 40) or before" in text
    assert "(20.0% into the run)" in text


def test_lr_decay_quiet_when_improving_late_or_unknown():
    assert decayed_early(run([0.9, 0.45, 0.40, 0.36], CUT_AT_2)) is None  # still improving
    assert decayed_early(run([0.9, 0.45, 0.44], CUT_AT_2[:3])) is None  # too few since the cut
    assert decayed_early(run([0.9, 0.45, 0.44, 0.45], [2e-3, 1e-4, 1e-4, 1e-4])) is None  # 20x
    late = [0.2, 0.6, 0.8, 0.9]  # cosine and step schedules reach 100x late in the run
    assert decayed_early(run([0.9, 0.45, 0.44, 0.45], CUT_AT_2, shares=late)) is None
    warmup = [1e-6, 2e-6, 4e-6, 8e-6]  # a warmup from near zero: rising, no decay
    assert decayed_early(run([0.9, 0.45, 0.44, 0.45], warmup)) is None
    unknown = [None] * 4  # an unknown run length: no verdict
    assert decayed_early(run([0.9, 0.45, 0.44, 0.45], CUT_AT_2, shares=unknown)) is None


def test_lr_decay_detector_waits_for_not_learning_and_lists_remedies():
    detector = Detector(patience=2)
    changes = [
        detector.update(e) for e in run([0.9, 0.45, 0.44, 0.45, 0.44, 0.45], [2e-3] + [2e-5] * 5)
    ]
    assert [c.verdict.kind for cs in changes for c in cs] == ["lr_decayed_early"]  # told once
    assert detector.active[0].severity == "note"
    text = diagnosis_text(detector.active, detector.history[-1])
    assert "**Note: Learning all but stopped" in text and "Check how often the scheduler" in text
    at_chance = Detector(patience=2)  # its remedies name the cut first
    for e in run([2.3] * 4, CUT_AT_2, probe_acc_val=0.1, probe_loss_val=2.3, classes=10.0,
                 probe_size=128.0):  # fmt: skip
        at_chance.update(e)
    assert set(at_chance.reported) == {"not_learning"}


class Decayed(Net):
    """Adam whose rate a per-step schedule cuts 100x after 10 steps (one epoch)."""

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        cut = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.01 if s >= 10 else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cut, "interval": "step"}}


def test_lr_decay_told_in_a_run_without_a_warning(tmp_path):
    torch.manual_seed(0)
    noisy = one_hot_set([40] * 4, noise=1.0)  # learnt halfway in the first epoch
    net = Decayed(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.05)
    val = DataLoader(one_hot_set([16] * 4, seed=1, noise=1.0), batch_size=32)
    train = DataLoader(noisy, batch_size=16, shuffle=True)
    trainer, said = fit_monitor(tmp_path, net, train, val, epochs=6)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "lr_decayed_early"]
    assert finding.severity == "note" and finding.figures["since_epoch"] == 0
    assert finding.figures["cut"] == 100.0 and finding.figures["lr"] == 5e-4
    assert finding.figures["since_share"] == 10 / 60  # the first validation after the cut
    assert not any("Learning all but stopped" in m for m in said)  # a note: no warning
    text = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")[-1]
    assert "Check how often the scheduler steps" in text


def test_lr_decay_a_rate_stopped_early_is_a_problem_at_its_second_evaluation():
    # ReduceLROnPlateau stepped per batch on the batch loss (held out): 0.05 -> 5e-9 by
    # step 21, val accuracy frozen at 28-57% (95% without the scheduler)
    stopped = [0.05, 5e-9, 5e-9, 5e-9]
    assert decayed_early(run([2.1, 2.07], stopped[:2], start=0.05)[:1]) is None  # one: a warmup?
    verdict = decayed_early(run([2.1, 2.07, 2.07], stopped[:3], start=0.05))
    assert (verdict.severity, verdict.since.step, verdict.detected.step) == ("problem", 40, 60)
    assert verdict.figures["cut"] == 1e7
    # a rate of exactly 0 (held out: a LambdaLR factor of 0 from step 50): said as 0
    zero = decayed_early(run([2.1, 2.07, 2.07], [0.05, 0.0, 0.0], start=0.05))
    assert "it is 0 (it started at 0.05), since epoch 1" in headline(zero)
    assert "infx" not in headline(zero)
    # 1000x below its start: a note once the val loss has stalled, as before
    verdict = decayed_early(run([2.1, 2.07, 2.07, 2.07], [0.05] + [5e-5] * 3, start=0.05))
    assert verdict.severity == "note"


def test_lr_decay_quiet_when_nothing_is_left_to_learn():
    # setups hunt 81: a converged run (100% train and val accuracy, val loss 4e-7) whose
    # ReduceLROnPlateau(patience=0) kept cutting the rate was told "learning all but stopped"
    stopped = [0.05, 5e-9, 5e-10, 5e-11]
    converged = run([0.3, 4e-7, 4e-7, 4e-7], stopped, start=0.05, val_acc=1.0, train_acc=1.0)
    assert decayed_early(converged) is None
    tiny = run([0.3, 2e-4, 2e-4, 2e-4], stopped, start=0.05)  # 1e-3 x its first: no accuracy
    assert decayed_early(tiny) is None
    left = run([0.3, 0.08, 0.08, 0.08], stopped, start=0.05, val_acc=0.97, train_acc=1.0)
    assert decayed_early(left).severity == "problem"  # 3% of val still to learn


class PlateauPerStep(Net):
    """SGD whose ReduceLROnPlateau (patience 0) is stepped every batch on a batch's figure.

    In its default mode ("min") it cuts the rate at every batch whose accuracy does not fall.
    """

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        cut = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0)
        schedule = {"scheduler": cut, "interval": "step", "monitor": "train/acc_step"}
        return {"optimizer": opt, "lr_scheduler": schedule}


def test_lr_decay_reduce_on_plateau_read_from_the_rate_training_started_at(tmp_path):
    # ReduceLROnPlateau sets no `initial_lr`: the start is the rate read at on_train_start
    torch.manual_seed(0)
    net = PlateauPerStep(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.05)
    val = DataLoader(one_hot_set([16] * 4, seed=1, noise=1.0), batch_size=32)
    train = DataLoader(one_hot_set([40] * 4, noise=1.0), batch_size=16, shuffle=True)
    trainer, said = fit_monitor(tmp_path, net, train, val, epochs=6)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "lr_decayed_early"]
    assert finding.severity == "problem" and finding.figures["lr_initial"] == 0.05
    assert finding.figures["cut"] >= 1e4
    assert any("Learning all but stopped" in m for m in said)  # a problem: warned
    # the cause, told before the first step (hunt 24: mode="min" on `val/acc`, found late)
    (mode,) = [f for f in findings_of(trainer) if f.kind == "plateau_mode"]
    assert (mode.severity, mode.step, mode.figures["better"]) == ("problem", 0, "max")
    assert mode.message.startswith(
        '`ReduceLROnPlateau` watches `train/acc_step` with `mode="min"`: it waits for '
        "`train/acc_step` to fall, where higher is better, so it cuts the learning rate 10x "
        "at every step"
    )
    assert mode.message.endswith('Set `mode="max"`.')
    (text,) = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")[:1]
    assert mode.message in text
