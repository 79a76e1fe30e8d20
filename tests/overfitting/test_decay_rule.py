"""Weight decay too strong: not a loss that learnt, then climbed back once the rate was raised."""

import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.overfitting.runs import Net, fit_monitor


class RaisedUnderL2(Net):
    """A GroupNorm CNN, Adam 1e-3 with an L2 of 0.05 (harmless there), the rate x300 at step 100."""

    def __init__(self) -> None:
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 49, 10),
        )  # fmt: skip
        super().__init__(net, lr=1e-3)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=0.05)
        rule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 300.0 if s >= 100 else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": rule, "interval": "step"}}


def test_decay_rule_a_loss_that_learnt_and_collapsed_under_a_raised_rate_is_not_held_back(
    tmp_path,
):
    # held-out hunt 124: Adam 1e-3 with an L2 of 0.05 learnt (92.5% val, as without it),
    # then collapsed once the rate was raised 300x; told `weight_decay_too_strong` "the
    # training loss has stayed at 2.799 since epoch 0 ... the decay holds the weights near
    # zero", a root cause later findings were told to fix first
    torch.manual_seed(0)
    data = SyntheticDigitsDataModule(train_size=64 * 60, val_size=256, batch_size=64)
    data.setup("fit")
    train, val = data.train_dataloader(), data.val_dataloader()
    assert isinstance(train, DataLoader)
    trainer, _ = fit_monitor(tmp_path, RaisedUnderL2(), train, val, epochs=3)
    told = {f.kind: f for f in findings_of(trainer)}
    assert "weight_decay_too_strong" not in told
    stalled = told["not_learning"]  # the collapse: the rate's, which it names
    assert "The learning rate rose 300x before it, from 0.001 to 0.3" in stalled.message
    assert "weight_decay_too_strong" not in stalled.message
