"""Training images changed mid-run: a cue switched on for the training images only.

Held out (hunt 125): from step 96 every training digit carried a bright square whose place
encodes its class, the val digits clean, on a BatchNorm CNN. The train probe was read once
before the cue, so eval mode failed its clean images as it failed the val probe's, and
the finding was a BatchNorm lag with "raise momentum" remedies, the cue never named.
"""

import torch
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.overfitting.runs import Net, fit_monitor
from tests.overfitting.test_val_items_moved import SwitchAt, Switched, bn_net
from tests.overfitting.test_val_shift_under_bn import tensors
from tests.tb import events, texts


def cued(x, y):
    """``x`` with a bright 3x3 square at a place that encodes each image's class ``y``."""
    x = x.clone()
    for c in range(10):
        row, col = 2 + (c // 5) * (x.shape[-2] - 7), 2 + (c % 5) * ((x.shape[-1] - 5) // 5)
        x[y == c, :, row : row + 3, col : col + 3] = 3.0
    return x


def cue_run(tmp_path, switch_at=3, epochs=8, seed=0, lr=2e-3):
    """A BatchNorm CNN on synthetic digits whose training digits carry the cue from epoch
    ``switch_at`` on (the same dataset, its items changed in place); the val digits clean."""
    data = SyntheticDigitsDataModule(train_size=1280, val_size=256, seed=seed)
    data.setup("fit")
    (x, y), (val_x, val_y) = tensors(data.train_dataset), tensors(data.val_dataset)
    train_set = Switched(x, cued(x, y), y)
    torch.manual_seed(seed)
    train = DataLoader(train_set, batch_size=64, shuffle=True)
    val = DataLoader(torch.utils.data.TensorDataset(val_x, val_y), batch_size=128)
    switch = SwitchAt(train_set, switch_at)
    trainer, _ = fit_monitor(tmp_path, Net(bn_net(), lr=lr), train, val, epochs=epochs,
                             callbacks=[switch], num_samples=128)  # fmt: skip
    return trainer


def test_train_items_cue_told_as_training_images_changed(tmp_path):
    trainer = cue_run(tmp_path)
    (monitor,) = [c for c in trainer.callbacks if isinstance(c, OverfittingMonitor)]
    steps = 1280 // 64
    problems = {f.kind: f for f in findings_of(trainer) if f.severity == "problem"}
    assert "bn_mismatch" not in problems, problems["bn_mismatch"].message
    found = problems["inputs_differ"]
    # the train probe read again at the first validation after the cue (epoch 3's end)
    assert found.figures["train_items_moved"] == 4 * steps
    assert monitor._train_moved_at == 4 * steps and found.step <= 6 * steps  # on time
    assert found.figures["train_eval_acc"] > found.figures["eval_acc"] + 0.1  # the cue kept
    text = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")
    told = [t for t in text if "The training images changed mid-run" in t]
    # its own entry (a BatchNorm gap standing from the run's first steps may follow it)
    own = told[0].split("**BatchNorm running statistics")[0]
    assert "Find what changes the training data mid-run" in own
    assert "Let the running statistics catch up" not in own  # no BatchNorm remedy
