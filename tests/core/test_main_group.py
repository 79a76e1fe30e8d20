"""The parameter group the run's settings are read from: the one holding most weights."""

import pytest
import torch
from torch import nn

from lightning_cnnviz.core.main_group import fastest_group, main_group
from lightning_cnnviz.core.settings import read_settings


def no_decay_first(net: nn.Module, **kw) -> list[dict]:
    """The usual recipe: biases and norms without weight decay, that group listed first."""
    flat = [p for p in net.parameters() if p.ndim <= 1]
    return [
        {"params": flat, "weight_decay": 0.0, **kw},
        {"params": [p for p in net.parameters() if p.ndim > 1]},
    ]


def test_main_group_is_the_one_holding_most_trainable_elements():
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Flatten(), nn.Linear(16, 4))
    opt = torch.optim.SGD(no_decay_first(net), lr=0.1, weight_decay=0.05)
    assert main_group(opt) is opt.param_groups[1]
    net[0].weight.requires_grad_(False)  # frozen weights count for nothing
    net[3].weight.requires_grad_(False)
    assert main_group(opt) is opt.param_groups[0]
    assert main_group(None) is None and main_group(object()) is None


def test_settings_read_the_decay_of_the_weights_not_of_the_biases_listed_first():
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.GroupNorm(2, 8), nn.Flatten(), nn.Linear(8, 10))
    opt = torch.optim.SGD(no_decay_first(net, lr=0.001), lr=0.05, momentum=0.9, weight_decay=0.05)
    s = read_settings([opt], net)
    assert (s.lr, s.weight_decay, s.momentum) == (0.05, 0.05, 0.9)
    # SGD's momentum carries a decay of 0.05 * 0.05 a step: the weight and its momentum
    # buffer shrink by the recurrence's largest root, 0.96, a step
    assert s.decay_per_step == pytest.approx(0.04)
    one = read_settings(
        [torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=0.05)], net
    )
    assert one.decay_per_step == pytest.approx(s.decay_per_step)


def test_fastest_group_leaves_out_groups_that_train_nothing():
    # setups hunt 69: an empty group at lr 100 listed first was read as the rate of a run
    # diverging at 3
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    net[1].requires_grad_(False)
    groups = [{"params": [], "lr": 100.0}, {"params": net[0].parameters(), "lr": 3.0},
              {"params": net[1].parameters(), "lr": 50.0}]  # fmt: skip
    opt = torch.optim.SGD(groups, lr=1.0)
    assert fastest_group(opt)["lr"] == 3.0
    assert read_settings([opt], net).lr_top == 3.0


def test_fastest_group_with_no_rate_held_as_a_number_is_the_main_group():
    # setups hunt 70: the weights' group at `lr=torch.tensor(3.0)` beside an empty group at
    # 100: the empty group was read
    net = nn.Linear(4, 2)
    opt = torch.optim.SGD([{"params": [], "lr": 100.0}, {"params": net.parameters()}],
                          lr=torch.tensor(3.0))  # fmt: skip
    assert fastest_group(opt) is opt.param_groups[1]
    assert read_settings([opt], net).lr_top == 3.0
