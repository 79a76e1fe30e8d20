"""Rectifiers capped at a top (ReLU6): units pinned there are saturated, not a deep net's
vanishing gradients (held out, hunt 28: biases of +8 before every ReLU6 of a 2-conv net)."""

from __future__ import annotations

import torch
from torch import nn

from lightning_cnnviz import ActivationMonitor
from lightning_cnnviz.core.activation_kind import upper_rail
from lightning_cnnviz.core.findings import findings_of
from tests.monitors import TinyCNN, fit, loaders


class PinnedReLU6(TinyCNN):
    def __init__(self) -> None:
        super().__init__(lr=0.01)
        self.relu1, self.relu2 = nn.ReLU6(), nn.ReLU6()
        for conv in (self.conv1, self.conv2):
            nn.init.constant_(conv.bias, 8.0)
        for bn in (self.bn1, self.bn2):
            nn.init.constant_(bn.bias, 8.0)  # after BatchNorm too: every unit at 6


def test_capped_rail_of_a_clamped_rectifier_only():
    assert upper_rail(nn.ReLU6()) == 6.0 and upper_rail(nn.Hardtanh(0.0, 2.0)) == 2.0
    assert upper_rail(nn.ReLU()) is None and upper_rail(nn.Sigmoid()) is None


def test_capped_units_pinned_at_the_top_are_saturated_in_their_own_words(tmp_path):
    torch.manual_seed(0)
    data = loaders(n_train=64, n_val=16, batch_size=8)
    trainer, _, _ = fit(tmp_path, [ActivationMonitor(every_n_steps=2, window=1)],
                        model=PinnedReLU6(), data=data, limit_train_batches=None)  # fmt: skip
    (found,) = [f for f in findings_of(trainer) if f.kind == "saturated_activations"]
    assert found.figures["saturation/relu1"] > 0.9
    assert "the top of their capped activation (ReLU6's 6, a clamp)" in found.message
    assert "Sigmoid/Tanh" not in found.message and "a large positive bias" in found.message
