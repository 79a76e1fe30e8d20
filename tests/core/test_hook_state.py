"""What the user's hooks hold is put back after a monitor's pass (``core.hook_state``)."""

import collections
import functools

import torch
from torch import nn

from lightning_cnnviz.core.model_state import kept_state


class Schedule:
    """A pruning schedule's state: a call count, records, a queue written in place."""

    def __init__(self):
        self.calls = 0
        self.seen = collections.defaultdict(list)
        self.bank = {"queue": torch.zeros(4), "ptr": 0}


def step(schedule, module, args):
    schedule.calls += 1
    schedule.seen["conv"].append(schedule.calls)
    schedule.bank["queue"][schedule.bank["ptr"] % 4] += 1.0  # in place
    schedule.bank["ptr"] += 1


def test_hook_state_partials_helpers_nested_records_and_banks_put_back():
    # setups hunt 70: a partial's arguments, a helper a closure holds, a defaultdict(list) of
    # records and a MoCo-style queue written in place kept the probe passes' calls
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3))
    by_partial, by_closure = Schedule(), Schedule()
    net[0].register_forward_pre_hook(functools.partial(step, by_partial))
    net[1].register_forward_pre_hook(lambda module, args: step(by_closure, module, args))
    x = torch.rand(1, 1, 8, 8)
    net(x)
    with kept_state(net):
        net(x)
        net(x)
    for schedule in (by_partial, by_closure):
        assert schedule.calls == 1 and dict(schedule.seen) == {"conv": [1]}
        assert schedule.bank["ptr"] == 1 and schedule.bank["queue"].tolist() == [1, 0, 0, 0]


class Pruned(nn.Module):
    """A module whose own method, a forward pre-hook, masks its weight at the 3rd call."""

    def __init__(self):
        super().__init__()
        self.conv, self.calls = nn.Conv2d(1, 2, 3), 0
        self.conv.register_forward_pre_hook(self.prune)

    def prune(self, module, args):
        self.calls += 1
        if self.calls == 3:
            with torch.no_grad():
                module.weight.zero_()

    def forward(self, x):
        return self.conv(x)


def test_hook_state_a_modules_own_method_writing_its_weight_is_put_back():
    # setups hunt 70: the write a later pass made was said ("no copy kept"), not undone
    net, x = Pruned(), torch.rand(1, 1, 6, 6)
    with kept_state(net):  # a first pass copies every parameter anyway
        net(x)
    net(x)
    net(x)
    weight = net.conv.weight.detach().clone()
    with kept_state(net):
        net(x)  # the third call: zeroes the weight
        assert not net.conv.weight.any()
    assert net.calls == 2 and torch.equal(net.conv.weight, weight)
