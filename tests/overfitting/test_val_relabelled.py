"""Val labels changed mid-run: the first val batch read at each validation, a run."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.val_relabelled import changed_share, label_read
from tests.overfitting.runs import Net, fit_monitor, one_hot_set
from tests.tb import events, texts


def test_val_relabelled_share_only_for_the_same_images():
    images, labels = torch.rand(16, 3, 4, 4), torch.arange(16) % 4
    first = label_read(images, labels)
    shuffled = labels.clone()
    shuffled[:4] = (shuffled[:4] + 1) % 4
    assert changed_share(first, label_read(images, shuffled)) == 0.25
    assert changed_share(first, label_read(images.flip(0), labels.flip(0))) is None  # reordered
    assert label_read(images, None) is None and changed_share(first, None) is None
    assert label_read(images, torch.rand(16, 4)) is None  # no class labels: soft targets


class Relabelled(Dataset):
    """``data`` whose labels are moved one class on (``(y + 1) % 4``) once ``on`` is set."""

    def __init__(self, data):
        self.data, self.on = data, False

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return x, (y + 1) % 4 if self.on else y


class RelabelAt(L.Callback):
    """Sets ``data.on`` at the start of training epoch ``epoch``."""

    def __init__(self, data, epoch):
        self.data, self.epoch = data, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        self.data.on = trainer.current_epoch >= self.epoch


@pytest.mark.parametrize("shuffled", [False, True])
def test_val_relabelled_labels_remapped_mid_run_are_named(tmp_path, shuffled):
    # hunt 93: val labels shuffled (or moved one class on) from the third validation were
    # told "`validation_step` scores other weights ... or computes the metric wrong"
    torch.manual_seed(0)
    train = DataLoader(one_hot_set([128] * 4, seed=0), batch_size=32, shuffle=True)
    val_set = Relabelled(one_hot_set([64] * 4, seed=1))
    val = DataLoader(val_set, batch_size=64, shuffle=shuffled)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    trainer, _ = fit_monitor(tmp_path, Net(net, lr=0.05), train, val, epochs=5,
                             callbacks=[RelabelAt(val_set, 2)])  # fmt: skip
    (found,) = [f for f in findings_of(trainer) if f.kind == "val_metrics_differ"]
    assert found.severity == "problem" and found.figures["since_step"] == 48  # the third
    if shuffled:  # other images in the first val batch each time: no claim on the labels
        assert "labels_changed" not in found.figures
        assert "The val labels changed" not in found.message
        return
    assert found.figures["labels_changed"] == 1.0
    text = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")[-1]
    assert "The val labels changed: the first val batch holds the images" in text
    assert "100.0% of their labels differ since epoch 2 (step 48)" in text
    assert "Find what changes the val labels mid-run" in text
