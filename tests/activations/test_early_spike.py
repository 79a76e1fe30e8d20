"""A blow-up of the first steps that leaves the net dead at its chance loss (held-out hunt 123)."""

import lightning as L
import torch
from torch import nn

from lightning_cnnviz.core.findings import findings_of
from tests.activations.diagnosis_nets import Net, fit
from tests.tb import events, texts


class HotStart(Net):
    """A no-norm ReLU CNN under SGD 0.03, its first two steps at ``factor`` x, then warmed up.

    As held-out hunt 123's MNIST run at 150x: the loss jumps at the first steps, comes back
    a little above its start and sits there, the layers' units silenced.
    """

    def __init__(self, factor: float) -> None:
        net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 49, 64), nn.ReLU(), nn.Linear(64, 10),
        )  # fmt: skip
        super().__init__(net, lr=0.03)
        self.factor = factor

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        factor = self.factor
        warm = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: factor if s < 2 else min(1.0, (s - 1) / 40)
        )
        return [opt], [{"scheduler": warm, "interval": "step"}]


def _run(tmp_path, factor, seed):
    L.seed_everything(seed, verbose=False)
    trainer = fit(tmp_path, HotStart(factor), 60, every=10)[0]
    said = "\n".join(texts(events(tmp_path), "activations/diagnosis"))
    return findings_of(trainer), said


def test_early_spike_a_hot_first_step_that_left_the_net_at_chance_is_told_with_its_rate(
    tmp_path,
):
    # 2.31 -> 4.14 at step 1 (under the 1.5x smoothed bar and the 10x one-step bar), then
    # about its start with most of the dense layer dead: before, no divergence was told
    # and the units were a dead-units note ("learning goes on", from a start the spike
    # lifted) or named no cause
    found, said = _run(tmp_path, 150.0, 3)
    (told,) = [f for f in found if f.kind == "divergence"]
    assert told.severity == "problem" and told.figures["spike_step"] == 1
    assert "then came back to its start and has sat there since" in told.message
    assert "The learning rate was 4.5 up to step 1, 150x the 0.03 in force now" in told.message
    assert "Try: lower the learning rate of the first steps (10x)" in told.message
    assert "The learning rate rose" not in said and "learning goes on" not in said
    assert not [f for f in found if f.severity == "problem" and f.kind != "divergence"]


def test_early_spike_the_same_net_without_the_hot_steps_is_quiet(tmp_path):
    found, said = _run(tmp_path, 1.0, 3)
    assert not [f for f in found if f.severity == "problem" or f.kind == "divergence"]
    assert "The learning rate was" not in said
