"""The rate the training diagnosis reads when the optimiser holds several parameter groups."""

import pytest
import torch

from lightning_cnnviz.core.findings import findings_of, problems
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn


class JumpedGroup(Net):
    """Two groups, the body and the last layer; one group's rate x300 from step 40."""

    def __init__(self, jumped: int) -> None:
        super().__init__(leaky_cnn(), lr=0.02)
        self.jumped = jumped

    def configure_optimizers(self):
        head = list(self.net[-1].parameters())
        body = [p for p in self.parameters() if all(p is not q for q in head)]
        groups = [{"params": body}, {"params": head}]
        opt = torch.optim.SGD(groups, lr=self.lr, momentum=0.9)
        rules = [lambda s: 1.0, lambda s: 1.0]
        rules[self.jumped] = lambda s: 300.0 if s >= 40 else 1.0
        jump = torch.optim.lr_scheduler.LambdaLR(opt, rules)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": jump, "interval": "step"}}


@pytest.mark.parametrize("jumped", [0, 1], ids=["body", "head"])
def test_param_groups_a_divergence_names_the_rate_raised_in_any_group(tmp_path, jumped):
    # hunt 74: the rate read from one group, a jump of another's (a head's 0.05 -> 10) went
    # unnamed, "at an unchanged learning rate", the batches blamed
    trainer, _ = fit(tmp_path, JumpedGroup(jumped), 80, every=20)
    diverged = [f for f in problems(findings_of(trainer)) if f.kind == "divergence"]
    assert diverged, [f.message for f in findings_of(trainer)]
    assert "The learning rate rose from 0.02 to 6 before it" in diverged[0].message
