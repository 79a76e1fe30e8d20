"""Settings that keep every step too small to learn: a rate small for its optimiser."""

import torch
from torch import nn

from lightning_cnnviz.core.settings import read_settings
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.small_steps import held_back, small_rate


def stuck(**settings) -> Evaluation:
    """A model at chance on the val probe whose last update moved the weights 4e-5."""
    return Evaluation(100, 1, probe_acc_val=0.08, probe_loss_val=2.35, probe_size=128.0,
                      classes=10.0, update_ratio=4e-5, **settings)  # fmt: skip


def test_small_steps_a_rate_far_below_its_optimisers_default_is_small():
    # hunts 74 and 75: Adadelta (default 1.0) at 1e-3 sat at chance, its steps 4e-5 of the
    # weights, and not_learning named no cause: the bar was Adam's 1e-4
    net = nn.Linear(4, 2)
    adadelta = read_settings([torch.optim.Adadelta(net.parameters(), lr=1e-3)], net)
    assert adadelta.lr_default == 1.0
    now = stuck(lr=1e-3, eps=1e-6, lr_default=adadelta.lr_default)
    assert small_rate(now) == 1e-3 and held_back(now)
    # the same rate for Adam is its default: no cause
    adam = read_settings([torch.optim.Adam(net.parameters(), lr=1e-3)], net)
    assert adam.lr_default == 1e-3
    assert small_rate(stuck(lr=1e-3, eps=1e-8, lr_default=adam.lr_default)) is None
    assert small_rate(stuck(lr=1e-5, eps=1e-8, lr_default=adam.lr_default)) == 1e-5
