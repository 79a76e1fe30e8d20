"""Weights whose initialisation stops learning: identical units, zero layers, negative biases."""

import copy
import re
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.activations.init_weights import (
    identical_units,
    init_reads,
    negative_biases,
    zero_weights,
)
from lightning_cnnviz.activations.rewrites import rewritten, update_reach, weight_norms
from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.tb import events, texts


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 49, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip


class Net(L.LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def fit(tmp_path, net: nn.Module, module: type[Net] = Net, every: int = 6):
    """12 steps of ``module(net)`` under one ActivationMonitor logging every ``every``."""
    L.seed_everything(0, verbose=False)
    data = SyntheticDigitsDataModule(train_size=64 * 12, val_size=64, batch_size=64)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=12, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[ActivationMonitor(every_n_steps=every)],
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module(net), data)
    return trainer, [str(w.message) for w in caught]


def test_identical_units_finds_constant_layers_only():
    constant, default, zero = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 3)
    nn.init.constant_(constant.weight, 0.02)
    nn.init.zeros_(zero.weight)
    depthwise = nn.Conv2d(4, 4, 3, groups=4)  # a blur: each unit sees its own channel
    nn.init.constant_(depthwise.weight, 1 / 9)
    frozen, one = nn.Linear(4, 3), nn.Linear(4, 1)
    nn.init.constant_(frozen.weight, 0.5)
    frozen.weight.requires_grad_(False)
    nn.init.constant_(one.weight, 0.5)
    layers = [("constant", constant), ("default", default), ("zero", zero),
              ("depthwise", depthwise), ("frozen", frozen), ("one", one)]  # fmt: skip
    assert identical_units(layers) == ["constant"]
    assert zero_weights(layers) == ["zero"]
    # within float noise of each other is the same unit; a real difference is not
    constant.weight.data[1] += 1e-9
    assert identical_units(layers[:1]) == ["constant"]
    constant.weight.data[1, 0] += 1e-3
    assert identical_units(layers[:1]) == []


def test_identical_units_constant_init_is_a_problem_at_the_first_log(tmp_path):
    net = cnn()
    for p in net.parameters():
        nn.init.constant_(p, 0.02)
    trainer, said = fit(tmp_path, net)
    (found,) = [f for f in findings_of(trainer) if f.kind == "symmetric_weights"]
    assert (found.severity, found.step) == ("problem", 6)
    # the hidden layers stay identical; the output layer's classes broke its symmetry
    assert "`net.0`, `net.3`, `net.7` holds the same weights" in found.message
    assert "`net.9`" not in found.message and found.figures == {"layers": 3.0}
    assert found.message in texts(events(tmp_path), "activations/diagnosis")[0]
    assert any(found.message in m for m in said)
    assert torch.equal(net[7].weight[0], net[7].weight[5])  # truly identical still


def test_identical_units_default_init_says_nothing(tmp_path):
    trainer, _ = fit(tmp_path, cnn())
    assert [f for f in findings_of(trainer) if f.kind == "symmetric_weights"] == []


def test_negative_biases_finds_layers_not_followed_by_a_norm():
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 26 * 26, 16), nn.Dropout(), nn.ReLU(), nn.Linear(16, 10),
    )  # fmt: skip
    assert negative_biases(list(net.named_modules())) == []  # PyTorch's default init
    for layer in (net[0], net[4]):
        nn.init.constant_(layer.bias, -3.0)
    # the conv's bias is taken out by the BatchNorm after it; the dense one is not
    assert negative_biases(list(net.named_modules())) == ["4"]
    nn.init.constant_(net[4].bias, -0.01)  # slightly negative: no finding
    assert negative_biases(list(net.named_modules())) == []


def test_negative_biases_named_as_the_cause_of_dead_units(tmp_path):
    net = cnn()
    nn.init.constant_(net[7].bias, -3.0)
    trainer, said = fit(tmp_path, net)
    found = {f.kind: f for f in findings_of(trainer)}
    bias = found["negative_biases"]
    assert (bias.severity, bias.step) == ("problem", 6)
    assert "`net.7` starts with biases far below zero" in bias.message
    assert bias.message in texts(events(tmp_path), "activations/diagnosis")[0]
    assert any(bias.message in m for m in said)
    # the dense ReLU's units start dead: named as following from the biases, not the rate
    dead = found["dead_units"]
    assert "`net.8`" in dead.message and "The biases' initialisation is the cause" in dead.message
    assert "lower the learning rate" not in dead.message.split("Try:")[1][:40]


def test_negative_biases_default_init_says_nothing(tmp_path):
    trainer, _ = fit(tmp_path, cnn())
    assert [f for f in findings_of(trainer) if f.kind == "negative_biases"] == []


def test_init_weights_every_normalisation_scale_at_zero_is_named_a_residual_one_is_not():
    # hunt 30: every BatchNorm gamma at 0 in a plain BN net (at chance, every unit silent
    # from step 0) was told as dead units with learning-rate remedies
    import torchvision

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3),
                        nn.BatchNorm2d(4), nn.ReLU())  # fmt: skip
    for bn in (net[1], net[4]):
        nn.init.zeros_(bn.weight)
    assert init_reads(net, ["0", "3"])["zero_layers"] == ["1", "4"]
    # torchvision's zero_init_residual closes each block's last BatchNorm on purpose
    resnet = torchvision.models.resnet18(weights=None, zero_init_residual=True)
    assert init_reads(resnet, ["conv1", "fc"])["zero_layers"] == []


def test_init_weights_a_norm_layers_shift_rewritten_between_logs_is_read():
    # hunt 59: a callback subtracted 6 from a BatchNorm's bias, every ReLU after it went
    # silent, and the divergence was told "lower the learning rate"
    net = nn.Sequential(nn.Conv1d(2, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 4, 3))
    before = weight_norms(net, ["0", "3"])
    assert {"1", "1:bias"} <= set(before)  # the norm layer read beside the depth's
    with torch.no_grad():
        net[1].bias -= 6.0
    assert rewritten(before, weight_norms(net, ["0", "3"])) == [
        ("1", "biases", 0.0, pytest.approx(6.0 * 8**0.5))
    ]


def test_init_weights_a_jump_the_optimisers_own_steps_make_is_no_rewrite():
    # setups hunt 64: SGD 0.3 with momentum 0.9 on a diverging net moved a BatchNorm's
    # biases from norm 0.22 to 1.7 in four steps: "something outside the optimiser"
    net = nn.Sequential(nn.Conv1d(2, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 4, 3))
    held = {id(p) for p in net.parameters()}
    sgd = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9)
    before = weight_norms(net, ["0", "3"])
    for _ in range(4):
        for p in net.parameters():
            p.grad = torch.full_like(p, -2.0 if p is net[1].bias else 0.0)
        sgd.step()
    now, reach = weight_norms(net, ["0", "3"]), update_reach(net, ["0", "3"], [sgd], held)
    assert [f[:2] for f in rewritten(before, now)] == [("1", "biases")]  # 0 -> 15.4
    assert reach["1:bias"] == pytest.approx(0.3 * 6.878 * 8**0.5, rel=1e-3)  # the buffer's
    assert rewritten(before, now, reach, steps=4) == []
    # a shift by hand under Adam's small steps is still one
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)
    adam.step()
    before = weight_norms(net, ["0", "3"])
    with torch.no_grad():
        net[1].bias -= 60.0
    reach = update_reach(net, ["0", "3"], [adam], held)
    assert [f[:2] for f in rewritten(before, weight_norms(net, ["0", "3"]), reach, 50)] == [
        ("1", "biases")
    ]


def test_init_weights_weights_a_strong_decay_shrinks_are_no_rewrite():
    # hunt 70: SGD 0.05, momentum 0.9, weight_decay 0.2 (about 10% a step with the
    # momentum) took a conv from norm 0.0037 to 0.00019 between two logs: "rewritten"
    net = nn.Sequential(nn.Conv1d(2, 8, 3), nn.ReLU(), nn.Conv1d(8, 4, 3))
    held = {id(p) for p in net.parameters()}
    sgd = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=0.2)
    before = weight_norms(net, ["0", "2"])
    for _ in range(60):
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        sgd.step()
    now, reach = weight_norms(net, ["0", "2"]), update_reach(net, ["0", "2"], [sgd], held)
    assert now["0"] * 20 < before["0"]  # collapsed 20x and more
    assert [f[:2] for f in rewritten(before, now, reach, 60)] == [
        ("0", "weights"),
        ("2", "weights"),
    ]
    assert rewritten(before, now, reach, 60, decay=0.05 * 0.2 / (1 - 0.9)) == []


def test_init_weights_a_bias_written_large_under_weight_decay_is_still_a_rewrite():
    # hunt 71: biases set to -20 under SGD momentum 0.9 with `weight_decay=0.02`: the
    # decay the momentum buffer then carried (of the written biases) read as a reach that
    # excused the jump, and the divergence blamed the rate
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    held = {id(p) for p in net.parameters()}
    sgd = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=0.02)

    def steps(k):
        for _ in range(k):
            for p in net.parameters():
                p.grad = torch.zeros_like(p)
            sgd.step()

    steps(5)
    before = weight_norms(net, ["0", "2"])
    with torch.no_grad():
        net[0].bias -= 20.0
    steps(50)
    now, reach = weight_norms(net, ["0", "2"]), update_reach(net, ["0", "2"], [sgd], held)
    found = rewritten(before, now, reach, 50, decay=0.05 * 0.02 / (1 - 0.9))
    assert [f[:2] for f in found] == [("0", "biases")]


class Clamped(Net):
    """Holds the second conv's weights at or below 0 after every step (setups hunt 60)."""

    def on_train_batch_end(self, *args):
        with torch.no_grad():
            self.net[3].weight.clamp_(max=0.0)
            self.net[3].bias.clamp_(max=-0.1)


def test_init_weights_a_layer_written_after_every_step_is_named_by_the_dead_units(tmp_path):
    # setups hunt 60: a clamp outside the optimiser (no norm 5x apart between two logs) kept
    # every unit after conv2 dead, told "Try: lower the learning rate"
    trainer, _ = fit(tmp_path, cnn(), Clamped)
    (dead,) = [f for f in findings_of(trainer) if f.kind == "dead_units"]
    assert dead.severity == "problem" and "`net.4`: 100% of units dead" in dead.message
    changed = r"The biases of `net.3` changed from norm ([\d.]+) to ([\d.]+) between a step's "
    said = re.search(changed + "update and the next batch, where no update runs", dead.message)
    assert said and said[1] != said[2]
    assert "Try: find what writes that layer during training" in dead.message
    assert "lower the learning rate" not in dead.message
    (text,) = texts(events(tmp_path / "tb"), "activations/diagnosis")[-1:]
    assert "The biases of `net.3` changed" in text


def test_init_weights_nothing_is_written_between_the_steps_of_a_plain_run(tmp_path):
    trainer, _ = fit(tmp_path, cnn())
    monitor = trainer.callbacks[0]
    assert monitor.events == 2 and monitor.diagnosis.written == ()


class WithTeacher(Net):
    """A frozen mean teacher, moved towards the net after every step (setups hunt 62)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        self.teacher = copy.deepcopy(net).requires_grad_(False)

    def on_train_batch_end(self, *args):
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.net.parameters(), strict=True):
                t.lerp_(s, 0.5)

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=1e-3)


class WithTeacherListed(WithTeacher):
    """The same, the optimiser given ``self.parameters()``: the frozen teacher's listed too."""

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


@pytest.mark.parametrize("module", [WithTeacher, WithTeacherListed])
def test_init_weights_a_teacher_written_by_design_is_not_read_as_written(tmp_path, module):
    # setups hunts 62 and 63: a mean teacher's layers, moved after every step, were named as
    # what silenced the student's units ("changed ... where no update runs"), also where
    # the optimiser lists them (it never steps a parameter that requires no gradient)
    net = nn.Sequential(*cnn()[:3], nn.BatchNorm2d(8), *cnn()[3:])  # a norm layer to read
    trainer, _ = fit(tmp_path, net, module, every=3)
    monitor = trainer.callbacks[0]
    assert monitor.events == 4 and monitor.diagnosis.written == ()
