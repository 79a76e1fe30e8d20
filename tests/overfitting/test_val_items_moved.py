"""Val images changed mid-run with each channel's mean and spread alike.

Held out (hunt 125): val digits inverted and noised from a validation on (normalised, so
their channels' statistics stay alike) on a BatchNorm CNN: the batch-statistics pass read
the val probe's images cached before the change (95-100% against 8-15% on the images the
loop read), told the images "whose own batch statistics undo the difference" and a second,
wrong-cause BatchNorm mismatch that headed the summary.
"""

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.overfitting.runs import Net, fit_monitor
from tests.overfitting.test_val_shift_under_bn import tensors
from tests.tb import events, texts


class Switched(Dataset):
    """``x`` until ``on`` is set, then ``moved`` (same labels)."""

    def __init__(self, x, moved, y):
        self.x, self.moved, self.y, self.on = x, moved, y, False

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return (self.moved if self.on else self.x)[i], self.y[i]


class SwitchAt(L.Callback):
    """Sets ``data.on`` from training epoch ``epoch`` (the validations after it)."""

    def __init__(self, data, epoch):
        self.data, self.epoch = data, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        self.data.on = trainer.current_epoch >= self.epoch


def bn_net():
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, 32), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))  # fmt: skip


def switched_run(tmp_path, switch_at=3, sd=0.3):
    """A BatchNorm CNN on synthetic digits, its val digits inverted about their mean from
    the validation of epoch ``switch_at`` on (plus noise of ``sd``, the spread kept)."""
    data = SyntheticDigitsDataModule(train_size=1280, val_size=256, seed=0)
    data.setup("fit")
    (x, y), (val_x, val_y) = tensors(data.train_dataset), tensors(data.val_dataset)
    mean, std = val_x.mean(), val_x.std()
    noise = torch.randn(val_x.shape, generator=torch.Generator().manual_seed(3))
    moved = 2 * mean - val_x + sd * std * noise
    moved = (moved - moved.mean()) / moved.std() * std + mean  # the same mean and spread
    val_set = Switched(val_x, moved, val_y)
    torch.manual_seed(0)
    train = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    val = DataLoader(val_set, batch_size=128)
    trainer, _ = fit_monitor(tmp_path, Net(bn_net(), lr=1e-3), train, val, epochs=6,
                             callbacks=[SwitchAt(val_set, switch_at)])  # fmt: skip
    return trainer


def test_val_items_moved_figures_read_the_images_the_loop_read(tmp_path):
    trainer = switched_run(tmp_path)
    (monitor,) = [c for c in trainer.callbacks if isinstance(c, OverfittingMonitor)]
    steps = 1280 // 64
    after = [e for e in monitor.detector.history if e.step >= 4 * steps]
    # the batch-statistics pass reads the switched images too: far from the clean ones' 90%+
    read = [e.probe_acc_bn for e in after if e.probe_acc_bn is not None]
    assert read and max(read) < 0.5, read
    problems = {f.kind: f for f in findings_of(trainer) if f.severity == "problem"}
    assert "bn_mismatch" not in problems, problems["bn_mismatch"].message
    found = problems["inputs_differ"]
    assert found.figures["items_moved"] == 1.0 and found.step == 4 * steps  # on time
    assert found.figures["moved_acc"] < 0.75 * found.figures["before_acc"]
    text = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")[-1]
    assert "The validation images changed since epoch 3 (step 80)" in text
    assert "undo the difference" not in text
    assert "Find what changes the val data mid-run" in text
