import itertools

import pytest
import torch
from torch import nn
from torch.ao.quantization import FakeQuantize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from lightning_cnnviz.core.model_state import kept_state
from lightning_cnnviz.core.weight_leaves import weight_param
from tests.monitors import TinyCNN, fit, make_monitor


def test_kept_state_puts_back_observer_buffers_updated_in_eval_mode():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), FakeQuantize()).eval()
    before = {n: b.clone() for n, b in net.named_buffers()}
    with kept_state(net):
        net(torch.randn(2, 1, 5, 5))
        moved = [n for n, b in net.named_buffers() if not torch.equal(b, before[n])]
    assert moved  # the observer did update inside
    assert all(torch.equal(b, before[n]) for n, b in net.named_buffers())
    assert not net.training and not net[1].training


def test_kept_state_puts_back_per_channel_observer_buffers_grown_inside():
    # setups hunt 27: a per-channel observer's min/max start empty, and grow in place at
    # the first forward; putting the empty values back raised and aborted fit
    quant = FakeQuantize(torch.ao.quantization.MovingAveragePerChannelMinMaxObserver, ch_axis=1)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), quant)
    observer = quant.activation_post_process
    held = observer.min_val
    with kept_state(net):
        net(torch.randn(2, 1, 5, 5))
        assert observer.min_val.shape == (2,)
    assert observer.min_val is held and observer.min_val.shape == (0,)


def test_kept_state_holds_spectral_norm_still_and_restores_its_flags():
    conv = spectral_norm(nn.Conv2d(1, 2, 3))
    with torch.no_grad():  # off its converged value, so that one power iteration moves it
        conv.parametrizations.weight[0]._u.copy_(torch.tensor([1.0, 0.0]))
    u = conv.parametrizations.weight[0]._u.clone()
    with kept_state(conv):
        assert not conv.parametrizations.weight.training
        _ = conv.weight
    assert torch.equal(conv.parametrizations.weight[0]._u, u)
    assert conv.parametrizations.weight.training
    _ = conv.weight  # outside: training mode runs its power iteration as training does
    assert not torch.equal(conv.parametrizations.weight[0]._u, u)


def test_weight_param_is_the_leaf_that_gets_the_gradient():
    plain, normed = nn.Conv2d(1, 2, 3), weight_norm(nn.Conv2d(1, 2, 3))
    assert weight_param(plain) is plain.weight
    leaf = weight_param(normed)
    assert leaf is normed.parametrizations.weight.original1  # the direction, full shape
    normed(torch.randn(1, 1, 5, 5)).sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == (2, 1, 3, 3)
    assert weight_param(nn.ReLU()) is None


class Queue(nn.Module):
    """A contrastive queue that ``forward`` writes (MoCo's keys), of ``size`` elements."""

    def __init__(self, size):
        super().__init__()
        self.register_buffer("queue", torch.zeros(size))

    def forward(self, x):
        self.queue[: x.numel()] = x.flatten()
        return x


def test_kept_state_puts_back_a_contrastive_queue_and_says_a_larger_table_written(monkeypatch):
    # held out (setups hunt 22): a 65536 x 128 queue, over the old 1 << 22 limit, kept the
    # probe images' keys, and the run trained differently with the monitors on
    import warnings

    from lightning_cnnviz.core import model_state

    net = Queue(65536 * 128)
    with kept_state(net):
        net(torch.ones(4, 8))
    assert not net.queue.any()
    monkeypatch.setattr(model_state, "KEPT_NUMEL", 16)
    net = Queue(64)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for _ in range(2):
            with kept_state(net):
                net(torch.ones(2, 2))
        with kept_state(net):
            pass  # read only: nothing to say
    assert net.queue[:4].tolist() == [1.0] * 4  # too large to copy: written
    (message,) = [str(w.message) for w in said]
    assert "buffer `queue` (64 elements, too large to keep a copy of) was written" in message


def test_kept_state_puts_back_what_forward_changes_outside_buffers():
    # setups hunt 23: a generator the model holds, a list it appends to and a counter in a
    # namespace each made training differ with the monitors on
    import collections
    import dataclasses
    import random
    import types

    import numpy as np

    @dataclasses.dataclass(slots=True)
    class Calls:
        n: int = 0

    class Stateful(nn.Module):
        def __init__(self):
            super().__init__()
            self.torch_rng, self.py_rng = torch.Generator().manual_seed(0), random.Random(0)
            self.np_rng = np.random.default_rng(0)
            self.history, self.recent = [], collections.deque(maxlen=3)
            self.seen, self.classes = {}, set()
            self.level = torch.zeros(2)
            self.counter = types.SimpleNamespace(calls=0, log=[])
            self.calls = Calls()

        def forward(self, x):
            self.history.append(torch.randn(1, generator=self.torch_rng))
            self.recent.append(self.py_rng.random() + self.np_rng.random())
            self.seen[len(self.seen)] = 1
            self.classes.add(len(self.classes))
            self.level.add_(1.0)
            self.counter.calls += 1
            self.counter.log.append(1)
            self.calls.n += 1
            self.added = True  # an attribute made by the pass: removed
            return x

    net = Stateful()
    net(torch.zeros(1))
    expected = Stateful()
    expected(torch.zeros(1))
    with kept_state(net):
        for _ in range(4):
            net(torch.zeros(1))
    net(torch.zeros(1))
    expected(torch.zeros(1))  # the second call of a run without the passes
    assert torch.equal(torch.cat(net.history), torch.cat(expected.history))
    assert list(net.recent) == list(expected.recent)
    assert net.seen == expected.seen and net.classes == expected.classes
    assert torch.equal(net.level, expected.level)
    assert vars(net.counter) == vars(expected.counter) and net.calls == expected.calls == Calls(2)


class SampledConv(nn.Conv2d):
    """A Bayes-by-backprop conv: its weight a property sampling ``mu + sigma * eps``."""

    def __init__(self):
        super().__init__(1, 2, 3)
        self.mu = self._parameters.pop("weight")
        self.log_sigma = nn.Parameter(torch.full_like(self.mu, -4.0))

    @property
    def weight(self):
        return self.mu + self.log_sigma.exp() * torch.randn_like(self.mu)


def test_weight_param_does_not_run_a_weight_property():
    # setups hunt 35: asking a sampled conv for its weight drew from torch's stream outside
    # the kept state, and training with the monitors was no longer bit-identical
    conv = SampledConv()
    state = torch.random.get_rng_state()
    assert weight_param(conv) is None
    assert torch.equal(torch.random.get_rng_state(), state)


def test_backward_hooks_aside_the_runs_hooks_never_see_a_probes_gradients(tmp_path):
    # setups hunt 36: a global backward hook warming gradients up by its call count saw
    # Grad-CAM's, the attack's and activation maximisation's backward passes (29 calls,
    # not 12), and training differed
    calls = {"global": 0, "module": 0}

    def count(kind):
        def hook(module, grad_input, grad_output):
            calls[kind] += 1

        return hook

    names = ("GradCAMMonitor", "AdversarialMonitor", "ActivationMaximizationMonitor")
    counted = {}
    for monitors in ((), names):
        calls.update(dict.fromkeys(calls, 0))
        torch.manual_seed(0)
        model = TinyCNN()
        own = model.conv1.register_full_backward_hook(count("module"))
        shared = nn.modules.module.register_module_full_backward_hook(count("global"))
        try:
            fit(tmp_path / str(len(monitors)), [make_monitor(n) for n in monitors], model=model)
        finally:
            shared.remove()
        counted[len(monitors)] = dict(calls)
        assert len(model.conv1._backward_hooks) == 1  # the run's own hook is back in place
        own.remove()
    assert counted[len(names)] == counted[0] and counted[0]["module"] == 4  # one per step


def test_kept_state_removes_a_hook_a_probe_pass_made_forward_register_again():
    # setups hunt 37: a `forward` registering a hook once (`self.h is None`) registered it
    # in every probe pass, `self.h` put back to None: three hooks where the run had one
    class Once(nn.Module):
        def __init__(self):
            super().__init__()
            self.head, self.h = nn.Linear(2, 2), None

        def forward(self, x):
            if self.h is None:
                self.h = self.head.register_forward_hook(lambda m, a, out: out * 0.1)
            return self.head(x)

    net = Once()
    kept = net.head.register_forward_pre_hook(lambda m, a: None)  # the run's own, kept
    with kept_state(net):
        net(torch.ones(1, 2))
        assert len(net.head._forward_hooks) == 1
    assert net.h is None and len(net.head._forward_hooks) == 0
    assert list(net.head._forward_pre_hooks) == [kept.id]


def test_kept_state_removes_parameter_and_global_hooks_a_probe_pass_registered():
    # setups hunt 38: `forward` registering `head.weight.register_hook(...)` or a global
    # forward hook once: four hooks after the fit, outliving it
    net = nn.Linear(2, 1)
    calls = []
    with kept_state(net):
        net.weight.register_hook(lambda g: calls.append("param"))
        nn.modules.module.register_module_forward_hook(lambda m, a, o: calls.append("global"))
    net(torch.ones(1, 2, requires_grad=True)).sum().backward()
    assert calls == [] and net.weight.grad is not None
    assert len(nn.modules.module._global_forward_hooks) == 0


class Annealed(nn.Module):
    """A temperature kept in a frozen parameter and annealed in place at every call; noise
    drawn from a generator the class holds."""

    rng = torch.Generator().manual_seed(0)

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.temp = nn.Parameter(torch.ones(()), requires_grad=False)
        self.body = nn.Linear(3, 3).requires_grad_(False)  # a frozen layer forward never writes

    def forward(self, x):
        with torch.no_grad():
            self.temp.mul_(0.5)
        noise = torch.randn(x.shape, generator=self.rng)
        return self.fc(self.body(x) + noise) / self.temp


def test_kept_state_puts_back_frozen_parameters_and_class_generators_a_pass_moves():
    # setups hunt 70: both trained differently with the monitors than without
    net, x = Annealed(), torch.randn(4, 3)
    rng, version = Annealed.rng.get_state(), net.body.weight._version
    for _ in range(3):  # the first pass copies every frozen parameter, later ones the written
        with kept_state(net):
            net(x)
        assert float(net.temp) == 1.0 and torch.equal(Annealed.rng.get_state(), rng)
    assert net.body.weight._version == version  # never written, never put back


def test_kept_state_parameters_past_the_copy_bound_are_said_then_kept(monkeypatch):
    # a model larger than KEPT_NUMEL is not copied whole at the first pass
    import lightning_cnnviz.core.kept_parameters as model_state

    said = []
    monkeypatch.setattr(model_state, "KEPT_NUMEL", 0)
    monkeypatch.setattr(model_state, "SMALL_NUMEL", 0)
    monkeypatch.setattr(model_state, "say", said.append)
    net, x = Annealed(), torch.randn(4, 3)
    with kept_state(net):
        net(x)
    assert float(net.temp) == 0.5 and len(said) == 1 and "`temp`" in said[0]
    with kept_state(net):  # known to be written now: copied and put back
        net(x)
    assert float(net.temp) == 0.5 and len(said) == 1


CALLS: dict[str, itertools.count] = {}


class WritesItsParameters(nn.Module):
    """A forward writing its parameters the ways users do, each from call ``start`` on."""

    def __init__(self, how: str, start: int = 0) -> None:
        super().__init__()
        self.how, self.start = how, start
        self.conv = nn.Conv2d(1, 2, 3)
        self.temp = nn.Parameter(torch.ones(()), requires_grad=False)

    def forward(self, x):
        late = next(CALLS[self.how]) >= self.start  # counted outside the module's state
        if late and self.how == "data":  # no version counter moves
            self.temp.data.mul_(0.5)
        elif late and self.how == "reassign":
            self.temp = nn.Parameter(self.temp.detach() * 0.5, requires_grad=False)
        elif late and self.how == "standardise":  # a trainable weight
            with torch.no_grad():
                w = self.conv.weight
                w.sub_(w.mean()).div_(w.std() + 1e-5).mul_(1.1)
        return self.conv(x).mean() / self.temp


@pytest.mark.parametrize(
    ("how", "start"), [("data", 0), ("reassign", 0), ("standardise", 0), ("data", 3)]
)
def test_kept_state_puts_back_parameters_a_forward_writes_however(how, start):
    # setups hunt 55: a temperature annealed through `.data` or re-assigned, a trainable
    # weight standardised in place, a write first made after a warm-up of calls: each
    # trained differently with the monitors' passes
    CALLS[how] = itertools.count()
    net, x = WritesItsParameters(how, start), torch.randn(2, 1, 5, 5)
    temp, weight = net.temp, net.conv.weight.detach().clone()
    for _ in range(5):
        with kept_state(net):
            net(x)
        assert net.temp is temp and float(net.temp) == 1.0
        assert torch.equal(net.conv.weight, weight)


def test_kept_state_a_sparse_parameter_is_followed_by_its_version_only():
    # setups hunt 56: comparing a frozen sparse COO parameter with its copy raised, and
    # every monitor stepped aside
    net = nn.Linear(3, 2)
    net.table = nn.Parameter(torch.eye(3).to_sparse(), requires_grad=False)
    with kept_state(net):
        net(torch.randn(1, 3))
    assert net.table.layout == torch.sparse_coo and torch.equal(net.table.to_dense(), torch.eye(3))


class GradualPrune:
    """A pruning schedule in a forward pre-hook: its mask, made at its 3rd call, written in."""

    def __init__(self):
        self.calls, self.mask = 0, None

    def __call__(self, module, args):
        self.calls += 1
        if self.calls == 3:
            self.mask = (module.weight.detach().abs() > 0.1).float()
        if self.mask is not None:
            with torch.no_grad():
                module.weight.mul_(self.mask)


def test_kept_state_puts_back_what_the_users_hooks_hold_and_the_weights_they_write():
    # setups hunt 69: a pruning hook's call counter (an object's or a closure's) moved by the
    # monitors' passes, and the mask it then wrote at a pass's call: weights differed
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3))
    prune, seen = GradualPrune(), []

    def counted(module, args, out):
        seen.append(len(seen))

    net[0].register_forward_pre_hook(prune)
    net[1].register_forward_hook(counted)
    x = torch.rand(2, 1, 8, 8)
    net(x)
    net(x)  # two calls: the next one prunes
    with kept_state(net):
        net(x)  # a first pass: every parameter is copied anyway
    weight = net[0].weight.detach().clone()
    with kept_state(net):
        net(x)
        assert prune.calls == 3 and prune.mask is not None and len(seen) == 3
    assert prune.calls == 2 and prune.mask is None and seen == [0, 1]
    assert torch.equal(net[0].weight, weight)  # a trainable weight, copied beside a user hook
