"""A BatchNorm mismatch with another cause the evidence shows: a setting raised, unlike splits.

Held out (hunt 125): AdamW's `weight_decay` raised 1e-2 -> 5 mid-run on a BatchNorm CNN,
val 79% -> 10.6% in eval mode against 92% on batch statistics at the next validation, was
told "BatchNorm running statistics lag: raise momentum to 0.2" (the decay two validations
later; a 30x RMSprop rate never); a cue on training images only, eval mode right on them
and far below on val images, was told the same.
"""

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.remedies import remedies
from tests.monitors import digits
from tests.overfitting.runs import Net, fit_monitor
from tests.tb import events, texts


class AdamW(Net):
    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3, weight_decay=1e-2)


class RaiseDecay(L.Callback):
    """Sets every parameter group's `weight_decay` to ``value`` from epoch ``epoch`` on."""

    def __init__(self, epoch: int, value: float) -> None:
        self.epoch, self.value = epoch, value

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            for group in trainer.optimizers[0].param_groups:
                group["weight_decay"] = self.value


def noisy(data, seed, sd=0.5):
    """``data``'s squares under noise of sd ``sd``: learnt to 85-95%, not to 100%."""
    x, y = data.tensors
    return TensorDataset(
        x + sd * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)), y
    )


def decay_run(tmp_path, value):
    """A BatchNorm CNN under AdamW on seeded squares, its decay set to ``value`` at epoch 3."""
    torch.manual_seed(0)

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    net = nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))  # fmt: skip
    train = DataLoader(noisy(digits(640, seed=1), 3), batch_size=32, shuffle=True)
    val = DataLoader(noisy(digits(256, seed=2), 4), batch_size=128)
    callbacks = [RaiseDecay(3, value)]
    trainer, _ = fit_monitor(tmp_path, AdamW(net, lr=3e-3), train, val, epochs=5,
                             callbacks=callbacks)  # fmt: skip
    told = [t for t in texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")]
    return trainer, told


def test_bn_cause_decay_raised_mid_run_is_named_at_the_first_validation(tmp_path):
    trainer, told = decay_run(tmp_path, value=5.0)
    bn = [f for f in findings_of(trainer) if f.kind == "bn_mismatch"]
    assert bn and bn[0].severity == "problem" and bn[0].step == 80  # first validation after
    assert bn[0].figures["raised"].startswith("Weight decay rose from")
    assert bn[0].figures["eval_acc"] < 0.7 < bn[0].figures["batch_stats_acc"]
    # told at the first validation after the raise (epoch 3 starts at step 60): its text
    # names the decay and sets it back, never a larger BatchNorm momentum
    first = next(t for t in told if "do not match the batches" in t)
    assert "Weight decay rose from" in first and "Now, epoch 3 (step 80)" in first
    assert "Set back the setting raised during the run" in first
    assert "raise it to" not in first and "Let the running statistics catch up" not in first


def test_bn_cause_healthy_decay_run_names_no_raised_setting(tmp_path):
    trainer, told = decay_run(tmp_path, value=1e-2)  # "raised" to what it was
    assert not [f for f in findings_of(trainer) if f.figures.get("raised")]
    assert "weight_decay_too_strong" not in {f.kind for f in findings_of(trainer)}
    assert not any("Weight decay rose from" in t for t in told)


def test_bn_cause_rate_raised_mid_run_is_the_cause_a_warmup_is_not():
    def ev(step, lr, eval_acc, warmup=False):
        loss = 0.4 if eval_acc > 0.5 else 2.6
        return Evaluation(step, step // 32, probe_acc_val=eval_acc, probe_acc_bn=0.9,
                          bn_only=0.9 - eval_acc, eval_only=0.0, probe_size=128.0, lr=lr,
                          probe_loss_val=loss, probe_loss_bn=0.35, val_loss=loss,
                          train_loss=0.3, train_acc=0.9, val_acc=eval_acc, classes=10.0,
                          run_share=step / 640, warmup=warmup)  # fmt: skip

    rows = [(32, 5e-4, 0.85), (64, 5e-4, 0.86), (96, 0.015, 0.16)]
    detector = Detector()
    told = [c.verdict for ev_ in (ev(*r) for r in rows) for c in detector.update(ev_)]
    assert [v.kind for v in told] == ["bn_mismatch"] and told[0].severity == "problem"
    assert "The learning rate rose from 0.0005 to 0.015 (30x)" in headline(told[0])
    assert not any("momentum" in r and "raise it" in r for r in remedies(told[0]))
    planned = Detector()  # the same rise planned by a warm-up: no setting named
    for r in rows:
        for c in planned.update(ev(*r, warmup=True)):
            assert "raised" not in c.verdict.figures


def test_bn_cause_eval_mode_keeping_training_images_is_told_as_unlike_val_images():
    # eval mode right on the training images, far below on val ones, batch statistics in
    # between (a cue only training images carry), train accuracy under the gap's bar
    row = {"train_acc": 0.99, "probe_acc_train": 0.98, "probe_acc_val": 0.74,
           "probe_acc_bn": 0.88, "bn_only": 0.16, "eval_only": 0.02, "probe_size": 128.0,
           "probe_size_train": 128.0, "bn_size": 128.0, "classes": 10.0, "run_share": 0.6,
           "probe_loss_val": 0.8, "probe_loss_bn": 0.4, "val_loss": 0.8, "val_acc": 0.74,
           "train_loss": 0.05}  # fmt: skip
    detector, told = Detector(), []
    for i in range(3):
        told += [c.verdict for c in detector.update(Evaluation(32 * (i + 4), i + 3, **row))]
    assert [v.kind for v in told] == ["inputs_differ"]
    text = headline(told[0])
    assert "Validation images differ from the training images" in text
    assert "undo only part of the difference" in text and "98.0% on the train probe" in text
    assert not any("momentum" in r for r in remedies(told[0]))
