"""A train accuracy logged per step only is one batch's, also at the epoch's end."""

import torch.nn.functional as F

from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.logged_reads import step_only
from lightning_cnnviz.overfitting.verdict import Verdict
from tests.monitors import TinyCNN, fit


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
    assert "train accuracy climbed to 62.5% (the latest batch's):" in headline(verdict)
    epoch = Evaluation(60, 5, val_acc=0.6, train_acc=0.77)
    verdict = Verdict("memorisation", epoch, epoch, peak, {})
    assert "climbed to 77.0%: the model" in headline(verdict)
