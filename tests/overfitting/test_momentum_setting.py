"""An optimiser whose momentum is 1 or more: told before the first step."""

import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import findings_of
from tests.overfitting.runs import Net, fit_monitor, one_hot_set


class WithMomentum(Net):
    def __init__(self, momentum: float) -> None:
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
        self.momentum = momentum

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)


def test_momentum_setting_of_one_is_told_before_the_first_step(tmp_path):
    # hunt 30: SGD with momentum=1.0 doubled the train loss and tripled the val loss while
    # val accuracy moved within 10 points: nothing was said
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    train = DataLoader(one_hot_set([16] * 4), batch_size=16, shuffle=True)
    trainer, said = fit_monitor(tmp_path / "one", WithMomentum(1.0), train, val, epochs=1)
    (found,) = [f for f in findings_of(trainer) if f.kind == "momentum_at_one"]
    assert (found.severity, found.step, found.figures["momentum"]) == ("problem", 0, 1.0)
    assert found.message.startswith("`SGD` runs with `momentum=1`: each update adds the whole")
    assert len([m for m in said if "runs with `momentum=1`" in m]) == 1
    trainer, _ = fit_monitor(tmp_path / "usual", WithMomentum(0.9), train, val, epochs=1)
    assert not [f for f in findings_of(trainer) if f.kind == "momentum_at_one"]
