"""A training loader handing the same few images at every step: told at the third step."""

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_cnnviz.core.findings import findings_of
from tests.overfitting.runs import fit_monitor, one_hot_set
from tests.overfitting.test_monitor_rules import Net


class Wrapped(Dataset):
    """``__getitem__`` wraps the index at ``k``: every batch holds the same ``k`` items."""

    def __init__(self, data, k):
        self.data, self.k = data, k

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i % self.k]


def _fit(tmp_path, k, shuffle):
    train = one_hot_set([32] * 4)
    data = Wrapped(train, k) if k else train
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    loader = DataLoader(data, batch_size=16, shuffle=shuffle)
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    torch.manual_seed(0)
    return fit_monitor(tmp_path, model, loader, val, epochs=1)


def test_repeated_items_a_wrapped_index_is_told_at_the_third_step(tmp_path):
    # hunt 33: the same 64 digits at every step, told as overfitting three validations late
    trainer, said = _fit(tmp_path, k=16, shuffle=False)
    (found,) = [f for f in findings_of(trainer) if f.kind == "repeated_batches"]
    assert (found.severity, found.step) == ("problem", 2)
    assert found.figures == {"distinct": 16.0, "read": 48.0, "set_size": 128.0}
    assert "its first 3 batches hold 48 images but only 16 different ones" in found.message
    assert len([m for m in said if m.startswith("The training loader hands the same")]) == 1


def test_repeated_items_quiet_for_a_usual_loader(tmp_path):
    trainer, _ = _fit(tmp_path, k=0, shuffle=True)
    assert not [f for f in findings_of(trainer) if f.kind == "repeated_batches"]
