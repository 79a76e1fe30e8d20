"""The check of an activation on the logits, on outputs that are no logits (real fits)."""

import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.core.findings import findings_of
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn
from tests.tb import events


class HeadInSteps(Net):
    """``forward`` returns ReLU'd features (N, 64); the steps apply the (N, 10) head."""

    def __init__(self) -> None:
        super().__init__(nn.Sequential(*list(leaky_cnn())[:-3], nn.Linear(16 * 49, 64), nn.ReLU()),
                         lr=0.05)  # fmt: skip
        self.add_module("classifier", nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.classifier(self(batch[0])), batch[1])


def test_output_activation_features_read_by_a_head_in_the_steps_are_no_logits(tmp_path):
    # held-out hunt 117: a ReLU'd (N, 64) feature vector, the head applied in the steps, was
    # told "the model's output passes through `feat.8` ... 6 of its outputs (classes 6, 9,
    # 14, 20, 31, 36) are 0", a problem, on a run at 96.6% val accuracy with 10 classes
    trainer, said = fit(tmp_path, HeadInSteps(), 50, 10)
    assert [f for f in findings_of(trainer) if f.kind == "output_activation"] == []
    (why,) = [m for m in said if "check of an activation on the logits does not run" in m]
    assert "`classifier` (Linear 64 -> 10), which `forward` never calls" in why
    assert "the 10 classes its labels hold" in why
    # the ReLU's units are features, recorded as a layer's at every log
    steps = [e.step for e in events(tmp_path).Scalars("activations/net.8/dead_fraction")]
    assert steps == [10, 20, 30, 40, 50]


class AuxHeadOnLogits(Net):
    """``forward`` returns (N, 20) logits for 10 labels; a second task's head reads them."""

    def __init__(self) -> None:
        super().__init__(nn.Sequential(*list(leaky_cnn())[:-1], nn.Linear(64, 20)), lr=0.05)
        self.add_module("aux", nn.Linear(20, 4))

    def training_step(self, batch, batch_idx):
        out = self(batch[0])
        return F.cross_entropy(out, batch[1]) + 1e-3 * self.aux(out).pow(2).mean()


def test_output_activation_logits_read_by_another_tasks_head_stay_logits(tmp_path):
    # held-out hunt 120: (N, 1000) logits trained on 10 labels, a `Linear(1000, 32)` read in
    # `training_step` only, were taken for features: Grad-CAM and four checks stepped aside
    _, said = fit(tmp_path, AuxHeadOnLogits(), 20, 10)
    assert not [m for m in said if "which `forward` never calls" in m]
    # the monitor read the run at both logs (its last activation, LeakyReLU, dormant units)
    steps = [e.step for e in events(tmp_path).Scalars("activations/net.8/dormant_fraction")]
    assert steps == [10, 20]
