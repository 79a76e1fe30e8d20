"""Short real runs: each validation rule read back from findings_of and TensorBoard text,
and the run-level end-of-fit summary."""

import logging
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from tests.overfitting.runs import Net, fit
from tests.tb import events, texts


def test_monitor_rules_bn_mismatch_found_and_buffers_untouched(tmp_path):
    torch.manual_seed(0)
    # running statistics that barely move (momentum 1e-3) lag far behind the batches
    norm = nn.BatchNorm1d(16, momentum=1e-3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), norm, nn.ReLU(), nn.Linear(16, 2))
    trainer, said = fit(tmp_path, Net(net, lr=0.05), [OverfittingMonitor(num_samples=64)])
    assert int(norm.num_batches_tracked) == 4 * 4  # training batches only: no probe counted
    (finding,) = [f for f in findings_of(trainer) if f.kind == "bn_mismatch"]
    # parted from epoch 1, told at epoch 2 (one validation later), updated as it widened
    assert (finding.severity, finding.figures["since_epoch"], finding.epoch) == ("problem", 1, 3)
    assert finding.figures["change"] == "worse"
    assert finding.figures["batch_stats_acc"] - finding.figures["eval_acc"] > 0.05
    assert finding.message.startswith("BatchNorm running statistics do not match the batches")
    assert any("BatchNorm running statistics" in m for m in said)
    acc = events(tmp_path / "tb")
    gap = [e.value for e in acc.Scalars("overfitting/bn_gap_acc")]
    screen = [e.value for e in acc.Scalars("overfitting/bn_screen")]
    # epoch 0: the first pass (the screen's baseline; no gap yet); from epoch 1 the gap
    # it saw brought the pass at every validation
    assert len(screen) == 4 and len(gap) == 4 and gap[-1] == finding.figures["gap_acc"]
    assert gap[0] < 0.05 < gap[1]
    assert "momentum" in texts(acc, "overfitting/diagnosis")[-1]


def test_monitor_rules_not_learning_at_chance_from_the_start(tmp_path):
    head = nn.Linear(16, 2)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    net = nn.Sequential(nn.Flatten(), head)
    trainer, _ = fit(tmp_path, Net(net, lr=0.0), [OverfittingMonitor(num_samples=64)], epochs=3)
    (finding,) = findings_of(trainer)
    assert (finding.kind, finding.epoch, finding.figures["since_epoch"]) == ("not_learning", 1, 0)
    assert finding.figures["probe_acc"] == 0.5 and finding.figures["from_start"] is True
    assert "ln(2) = 0.6931" in finding.message and "50.0% is at chance (50.0%)" in finding.message
    said = texts(events(tmp_path / "tb"), "overfitting/diagnosis")[0]
    assert "1. **Raise the learning rate**: it is 0" in said  # the run's lr, not a guess


class Broken(Monitor, section="broken"):
    """A monitor that fails at its first event (and so steps aside)."""

    watches_layers = needs_call_sites = False

    def log_event(self, trainer, pl_module):
        raise RuntimeError("boom")


def test_monitor_rules_summary_once_per_fit_says_what_did_not_run(tmp_path, caplog):
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    monitors = [OverfittingMonitor(num_samples=64), Broken(every_n_steps=1)]
    with caplog.at_level(logging.INFO):
        trainer, said = fit(tmp_path, Net(net, lr=0.01), monitors, epochs=2, val=False)
    assert findings_of(trainer) == []
    assert caplog.text.count("lightning-cnnviz: no problems found") == 1  # once, by the last
    (summary,) = texts(events(tmp_path / "tb"), "cnnviz/summary")
    assert summary.startswith("lightning-cnnviz: no problems found by the checks that ran")
    assert "Checks that ran: OverfittingMonitor (training order)." in summary  # no val data
    assert "OverfittingMonitor/overfitting, memorisation, " in summary  # one reason, once
    assert summary.count("(the run has no validation data)") == 1
    assert "Broken (stepped aside: RuntimeError: boom)" in summary
    assert any("Broken failed and steps aside" in m for m in said)
    with caplog.at_level(logging.INFO):
        fit(tmp_path / "broken", Net(net, lr=0.01), [Broken(every_n_steps=1)], val=False)
    (summary,) = texts(events(tmp_path / "broken" / "tb"), "cnnviz/summary")
    assert summary.startswith("lightning-cnnviz: no check ran in this run")
    assert "no problems found" not in summary


def test_monitor_rules_summary_names_the_val_loss_key_it_missed(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    monitor = OverfittingMonitor(num_samples=64, val_loss_key="valid_loss")
    trainer, _ = fit(tmp_path, Net(net, lr=0.05), [monitor], epochs=2)
    check = checks_of(trainer)[("OverfittingMonitor", "overfitting")]
    assert not check.ran
    assert check.why == "needs a validation loss: none logged as `valid_loss` (set `val_loss_key=`)"
    # Adam without weight decay: nothing to judge, said so (not "needs decoupled decay")
    check = checks_of(trainer)[("OverfittingMonitor", "weight decay")]
    assert not check.ran and check.why == "the optimiser uses no weight decay"


def test_monitor_rules_not_learning_far_under_chance_says_below_chance():
    # setups hunt 22: a val set of one class read "val probe accuracy 0.0% is at chance (25.0%)"
    from lightning_cnnviz.overfitting import levels
    from lightning_cnnviz.overfitting.evaluation import Evaluation
    from lightning_cnnviz.overfitting.learning_words import headline

    history = [Evaluation(step, step // 50, classes=4.0, probe_acc_val=0.0, probe_loss_val=1.6,
                          probe_size=64.0) for step in (50, 100)]  # fmt: skip
    text = headline(levels.not_learning(history))
    assert "val probe accuracy 0.0% is below chance (25.0%)" in text


class Embedder(Net):
    """A 32-d embedding trained by a proxy loss (cosine to one learnt proxy per class)."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(16, 32)), lr=0.05)
        self.proxies = nn.Parameter(torch.randn(2, 32, generator=torch.Generator().manual_seed(3)))

    def loss(self, out, y):
        cosine = F.normalize(out, dim=1) @ F.normalize(self.proxies, dim=1).T
        return F.cross_entropy(8 * cosine, y)


def test_monitor_rules_embedding_outputs_are_not_judged_as_class_scores(tmp_path):
    # setups hunt 26: a 64-d embedding trained by SupCon on labels 0-9 was read as a 64-class
    # model at chance and told "not learning" while its loss fell 3.18 -> 1.93
    trainer, _ = fit(tmp_path, Embedder(), [OverfittingMonitor(num_samples=64)], epochs=4)
    assert not [f for f in findings_of(trainer) if f.kind == "not_learning"]
    history = trainer.callbacks[0].detector.history
    assert all(e.probe_outside_val >= 0.5 for e in history)  # read back: past labels 0-1
    assert all(e.returned_loss < 0.8 * e.probe_loss_val for e in history)  # another loss
    # judged for a collapse alone: its outputs differ from image to image (same_output)
    assert all(e.probe_spread_val > 0.05 for e in history)
    assert checks_of(trainer)[("OverfittingMonitor", "not learning")].ran


def test_monitor_rules_wide_outputs_trained_by_another_loss_score_elsewhere():
    # setups hunt 76: MoCo, a 32-wide embedding against labels 0-3, its largest outputs on
    # label indices by chance: its InfoNCE (4.15) far under their cross-entropy (5.25)
    from lightning_cnnviz.overfitting.chance_levels import scores_elsewhere
    from lightning_cnnviz.overfitting.evaluation import Evaluation

    moco = Evaluation(64, 1, returned_loss=4.15, classes=32.0, label_classes=4.0,
                      probe_size=128.0, probe_loss_val=5.25, probe_outside_val=0.2,
                      probe_acc_val=0.25, first_loss=4.3)  # fmt: skip
    assert scores_elsewhere(moco)
    assert not scores_elsewhere(replace(moco, classes=4.0))  # as wide as the labels: judged


def test_monitor_rules_a_contrastive_loss_falling_on_wide_outputs_withdraws_not_learning():
    # setups hunt 48: NT-Xent on a 32-wide projection, labels 0-9 in the batches unused:
    # its largest outputs fell on label indices by chance (23% past them), and the loss,
    # 4.14 -> 3.50, sits near ln 32, so "not learning" stood as a problem
    from lightning_cnnviz.overfitting.detector import Detector
    from lightning_cnnviz.overfitting.evaluation import Evaluation
    from lightning_cnnviz.overfitting.learning_words import headline

    def ev(step, returned, classes=32.0):
        return Evaluation(step, step // 16, classes=classes, label_classes=10.0, probe_size=128.0,
                          probe_acc_val=0.0, probe_loss_val=3.47, probe_outside_val=0.2,
                          returned_loss=returned, first_loss=4.14, run_share=step / 48)  # fmt: skip

    detector = Detector()
    changes = [c for step, loss in ((16, 4.12), (32, 3.84), (48, 3.50))
               for c in detector.update(ev(step, loss))]  # fmt: skip
    assert [(c.change, c.verdict.kind, c.verdict.severity) for c in changes] == [
        ("new", "not_learning", "problem"),
        ("gone", "not_learning", "note"),
    ]
    text = headline(changes[1].verdict)
    assert "they score something else: 32 wide against labels 0-9" in text
    assert "the loss `training_step` returns is 3.5 (first 4.14)" in text
    # outputs as wide as the labels' classes, the same loss: still not learning
    narrow = Detector()
    for step, loss in ((16, 4.12), (32, 3.84), (48, 3.50)):
        narrow.update(ev(step, loss, classes=10.0))
    assert narrow.reported["not_learning"].severity == "problem"


def test_monitor_rules_not_learning_on_a_head_wider_than_the_labels_reads_their_chance():
    # hunt 50: a model learning nothing, its head 100 wide for labels 0-9, sat at 10% and
    # ln 10 (only the 90 unused outputs pushed down): against 1% and ln 100 it read as
    # learning, and no problem was told
    from lightning_cnnviz.overfitting import levels
    from lightning_cnnviz.overfitting.evaluation import Evaluation
    from lightning_cnnviz.overfitting.learning_words import headline

    def history(width):
        return [Evaluation(step, step // 125, classes=width, label_classes=10.0,
                           probe_acc_val=0.102, probe_loss_val=2.31, probe_size=128.0,
                           probe_outside_val=0.0, run_share=step / 375)
                for step in (125, 250)]  # fmt: skip

    verdict = levels.not_learning(history(100.0))
    assert verdict is not None and abs(verdict.figures["chance_acc"] - 0.1) < 1e-9
    assert "is at chance (10.0%); probe loss 2.31, chance level ln(10) = 2.303" in headline(verdict)
    assert levels.not_learning(history(10.0)) is not None  # as wide as the labels: as before
