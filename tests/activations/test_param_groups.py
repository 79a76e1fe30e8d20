"""The rate the training diagnosis reads when the optimiser holds several parameter groups."""

import torch

from lightning_cnnviz.core.findings import findings_of, problems
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn


class JumpedWeightsGroup(Net):
    """Biases in a group of their own, listed first, at a steady rate; the weights' rate x60
    from step 40 (a schedule per group)."""

    def configure_optimizers(self):
        flat = [p for p in self.parameters() if p.ndim <= 1]
        weights = [p for p in self.parameters() if p.ndim > 1]
        opt = torch.optim.SGD(
            [{"params": flat, "lr": 1e-3}, {"params": weights}], lr=self.lr, momentum=0.9
        )
        jump = torch.optim.lr_scheduler.LambdaLR(
            opt, [lambda s: 1.0, lambda s: 60.0 if s >= 40 else 1.0]
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": jump, "interval": "step"}}


def test_param_groups_a_divergence_names_the_jump_of_the_weights_rate(tmp_path):
    # the first group held the biases at 1e-3 throughout: read from it, the jump of the
    # rate every weight steps at went unnamed
    trainer, _ = fit(tmp_path, JumpedWeightsGroup(leaky_cnn(), lr=0.02), 80, every=20)
    diverged = [f for f in problems(findings_of(trainer)) if f.kind == "divergence"]
    assert diverged, [f.message for f in findings_of(trainer)]
    assert "The learning rate rose from 0.02 to 1.2 before it" in diverged[0].message
