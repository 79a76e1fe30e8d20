"""A train accuracy logged per step only is one batch's, also at the epoch's end."""

import pytest
import torch.nn.functional as F

from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.logged_reads import step_only
from lightning_cnnviz.overfitting.verdict import Verdict
from tests.monitors import TinyCNN, fit, loaders
from tests.tb import events


class StepLogged(TinyCNN):
    """Logs the training loss and accuracy per step only (``self.log``'s default there)."""

    def training_step(self, batch, batch_idx):
        logits = self(batch[0])
        loss = F.cross_entropy(logits, batch[1])
        self.log("train/loss", loss)
        self.log("train/acc", (logits.argmax(1) == batch[1]).float().mean())
        return loss


def test_step_only_reads_how_the_module_logs(tmp_path):
    monitor = OverfittingMonitor()
    trainer, _, _ = fit(tmp_path / "a", [monitor], model=StepLogged(), max_epochs=2)
    assert step_only(trainer, "train/acc") and step_only(trainer, "train/loss")
    assert monitor.detector.history[-1].train_acc_images == 8.0  # one batch of 8
    monitor = OverfittingMonitor()
    trainer, _, _ = fit(tmp_path / "b", [monitor], model=TinyCNN(), max_epochs=2)
    assert not step_only(trainer, "train/acc")  # on_step and on_epoch: an epoch mean
    assert monitor.detector.history[-1].train_acc_images is None
    assert not step_only(trainer, "not/logged")


def test_step_only_memorisation_headline_says_a_batch_value_is_one():
    peak = Evaluation(20, 1, val_acc=0.9, train_acc=0.5)
    now = Evaluation(60, 5, val_acc=0.6, train_acc=0.625, train_acc_images=64.0)
    verdict = Verdict("memorisation", now, now, peak, {})
    assert "train accuracy climbed to 62.5% (one batch of 64 images):" in headline(verdict)
    epoch = Evaluation(60, 5, val_acc=0.6, train_acc=0.77)
    verdict = Verdict("memorisation", epoch, epoch, peak, {})
    assert "climbed to 77.0%: the model" in headline(verdict)


def test_step_only_a_short_last_batch_is_not_quoted_as_the_train_accuracy(tmp_path):
    # held-out hunt 117: 2500 images in batches of 64, `train_acc` logged per step only:
    # the last batch's 4 images were told "train accuracy 100.0% vs 52.6% on validation"
    # (82.5% on the training images in eval mode), another seed's note "(train 50.0%, ...)"
    monitor = OverfittingMonitor()
    data = loaders(n_train=35, n_val=16, batch_size=16)  # batches of 16, 16 and 3
    fit(tmp_path, [monitor], model=StepLogged(), data=data, max_epochs=2, limit_train_batches=None)
    now = monitor.detector.history[-1]
    assert (now.train_acc_images, now.train_batch_images) == (3.0, 16.0)
    assert now.train_acc in (0.0, 1 / 3, 2 / 3, 1.0) and now.probe_acc_train is not None
    assert now.short_batch_acc and now.train_accuracy == now.probe_acc_train
    figures = {"train_acc": now.train_accuracy, "val_acc": 0.1, "val_at_chance": False}
    gap = headline(Verdict("generalisation_gap", now, now, None, figures))
    assert f"since epoch 1 (step 6): train probe accuracy {now.probe_acc_train:.1%} vs" in gap
    closed = headline(Verdict("generalisation_gap", now, now, None, figures, severity="note"))
    assert f"(train probe accuracy {now.probe_acc_train:.1%}, val" in closed
    assert f"{now.train_acc:.1%}" not in gap + closed or now.train_acc == now.probe_acc_train


def test_step_only_the_charted_gap_is_not_a_short_batch_s(tmp_path):
    # held-out hunt 120: a 2-image last batch's 100% charted as `overfitting/gap_acc`
    monitor = OverfittingMonitor()
    data = loaders(n_train=33, n_val=16, batch_size=16)  # the last batch holds 1 image
    fit(tmp_path, [monitor], model=StepLogged(lr=0.0), data=data, max_epochs=2,
        limit_train_batches=None)  # fmt: skip
    now = monitor.detector.history[-1]
    assert now.train_acc in (0.0, 1.0) and 0.0 < now.probe_acc_train < 1.0  # untrained
    written = events(tmp_path / "tb").Scalars("overfitting/gap_acc")
    assert written[-1].step == now.step
    assert written[-1].value == pytest.approx(now.probe_acc_train - now.val_acc)
