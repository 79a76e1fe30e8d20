"""Short real fits: each training-side rule fires on its failure, with its cause, and only there."""

import math
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.activations.episodes import Verdict
from lightning_cnnviz.activations.sites import trace_sites
from lightning_cnnviz.core.findings import checks_of, findings_of, problems
from lightning_cnnviz.reference import MNISTClassifier
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.monitors import TinyCNN, loaders
from tests.monitors import fit as monitors_fit
from tests.tb import events, texts


class Net(L.LightningModule):
    def __init__(self, net: nn.Module, lr: float, momentum: float = 0.9) -> None:
        super().__init__()
        self.net, self.lr, self.momentum = net, lr, momentum

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)


def leaky_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.LeakyReLU(0.01), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.LeakyReLU(0.01), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 49, 64), nn.LeakyReLU(0.01), nn.Linear(64, 10),
    )  # fmt: skip


def plain_cnn(activation: type[nn.Module], depth: int, width: int, pools: tuple[int, int]):
    """``depth`` 3x3 convs of ``width`` channels, each with ``activation``; 28 -> 7 by two pools."""
    layers, channels = [], 1
    for i in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), activation()]
        channels = width
        if i in pools:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 49, 10))


def sigmoid_cnn(depth: int = 8) -> nn.Module:
    return plain_cnn(nn.Sigmoid, depth, 16, (2, 5))


def scaled_cnn(gain: float, depth: int = 6) -> nn.Module:
    """A plain ReLU CNN, He (kaiming) init times ``gain`` per layer (1: the standard)."""
    net = plain_cnn(nn.ReLU, depth, 8, (1, 3))
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
            module.weight.data.mul_(gain)
            nn.init.zeros_(module.bias)
    return net


def fit(tmp_path, model, steps, every=25, layers="auto"):
    L.seed_everything(0, verbose=False)
    data = SyntheticDigitsDataModule(train_size=64 * steps, val_size=64, batch_size=64)
    monitor = ActivationMonitor(every_n_steps=every, layers=layers)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=steps, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[monitor],
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, data)
    return trainer, [str(w.message) for w in caught]


def test_diagnosis_runs_reference_model_with_adam_is_healthy(tmp_path):
    trainer, said = fit(tmp_path, MNISTClassifier(), steps=50)
    assert problems(findings_of(trainer)) == []
    assert not [m for m in said if "dead" in m.lower() or "diverged" in m]
    # relu3 (flatten -> fc -> ReLU) keeps a third of its units silent: a note at most
    for finding in findings_of(trainer):
        assert finding.severity == "note" and finding.kind == "dead_units"
        assert "A note, not a problem" in finding.message


def test_diagnosis_runs_leaky_relu_divergence_not_advised_leaky_relu(tmp_path):
    trainer, said = fit(tmp_path, Net(leaky_cnn(), lr=2.0), steps=25)
    found = findings_of(trainer)
    assert [(f.kind, f.severity) for f in found] == [("divergence", "problem")]
    (diverged,) = found
    assert diverged.step == 25 and 1 <= diverged.figures["first_nonfinite_step"] < 25
    assert diverged.figures["first_nonfinite_parameter"] == "*"  # NaN spread to every weight
    assert "lower the learning rate" in diverged.message and "LeakyReLU" not in diverged.message
    assert [m for m in said if m.startswith("Training diverged")] == [diverged.message]
    assert texts(events(tmp_path), "activations/diagnosis") == [diverged.message]


def test_diagnosis_runs_deep_sigmoid_cnn_vanishing_gradients(tmp_path):
    trainer, _ = fit(tmp_path, Net(sigmoid_cnn(), lr=0.01), steps=25)
    (vanishing,) = [f for f in findings_of(trainer) if f.kind == "vanishing_gradients"]
    assert vanishing.severity == "problem" and vanishing.step == 25
    acc = events(tmp_path)
    first, last = (acc.Scalars(f"activations/net.{i}/grad_rms")[-1].value for i in (0, 19))
    assert vanishing.figures["first_rms"] == pytest.approx(first)
    assert vanishing.figures["depth_ratio"] < 1e-3 and first < 1e-3 * last
    assert "`net.0`" in vanishing.message and "Sigmoid" in vanishing.message
    assert not [f for f in findings_of(trainer) if f.kind == "dead_units"]  # sigmoids never die


def test_diagnosis_runs_frozen_first_layers_are_no_vanishing_gradients(tmp_path):
    # the same net with its first convolutions frozen: the profile starts at the first
    # trainable layer, which says nothing about gradients reaching the first layers
    net = sigmoid_cnn()
    for layer in list(net)[:6]:
        layer.requires_grad_(False)
    trainer, _ = fit(tmp_path, Net(net, lr=0.01), steps=25)
    assert not [f for f in findings_of(trainer) if f.kind == "vanishing_gradients"]
    acc = events(tmp_path)
    assert "activations/net.0/grad_rms" not in acc.Tags()["scalars"]  # frozen: no gradient
    assert len(acc.Scalars("activations/net.7/grad_rms")) > 0


class FunctionalTanh(nn.Module):
    """Four convs each read by ``torch.tanh`` (no activation module); half of the first
    conv's channels start never positive (bias -5)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else 8, 8, 3, padding=1) for i in range(4))
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.convs[0].bias[:4] = -5.0

    def forward(self, x):
        for conv in self.convs:
            x = torch.tanh(conv(x))
        return self.fc(x.mean((2, 3)))


def test_diagnosis_runs_conv_outputs_read_by_tanh_are_never_dead(tmp_path):
    # hunt 19: 12 convs each followed by `torch.tanh`: "`model.convs.9`: 44% of units dead"
    # with label and optimiser remedies; a negative input to tanh is no dead unit
    trainer, _ = fit(tmp_path, Net(FunctionalTanh(), lr=0.05), steps=10, every=5)
    monitor = trainer.callbacks[0]
    assert monitor.fallback and {i.kind for i in monitor._rec.sites.values()} == {"leaky"}
    assert not [f for f in findings_of(trainer) if f.kind == "dead_units"]


def test_diagnosis_runs_residual_activation_belongs_to_the_main_path():
    """After `out += downsample(x)` the block's ReLU reads conv2's output, not the shortcut's."""
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    relus = {n: m for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
    order: list[str] = []
    x = torch.randn(1, 3, 64, 64)
    _, sites = trace_sites(model, relus, lambda: model(x), order)
    for stage in ("layer2", "layer3", "layer4"):
        assert sites[f"{stage}.0.relu#1"].producer == f"{stage}.0.conv2"
        assert order.index(f"{stage}.0.downsample.0") > order.index(f"{stage}.0.conv2")
    assert sites["layer1.0.relu#1"].producer == "layer1.0.conv2"
    assert order[0] == "conv1" and order[-1] == "fc"


def test_diagnosis_runs_weights_too_large_at_init_exploding_with_the_chance_level(tmp_path):
    L.seed_everything(0, verbose=False)
    trainer, said = fit(tmp_path, Net(scaled_cnn(2.0), lr=1e-4), steps=10, every=5)
    (found,) = [f for f in findings_of(trainer) if f.kind == "exploding_gradients"]
    assert found.severity == "problem" and found.step == 5
    assert found.figures["classes"] == 10 and found.figures["over_chance"] > 10
    assert found.figures["first_loss"] > 10 * math.log(10) < found.figures["probe_loss"]
    assert f"chance level ln 10 = {math.log(10):.2f}" in found.message
    assert "initial weights are too large" in found.message
    assert found.message in texts(events(tmp_path), "activations/diagnosis")[0]
    assert [m for m in said if "Exploding activations at initialisation" in m] == [found.message]


def test_diagnosis_runs_standard_init_starts_at_chance_quietly(tmp_path):
    L.seed_everything(0, verbose=False)
    trainer, _ = fit(tmp_path, Net(scaled_cnn(1.0), lr=1e-2), steps=10, every=5)
    assert not [f for f in findings_of(trainer) if f.kind == "exploding_gradients"]


class SwitchUnits(L.Callback):
    """Bias -50 on 12 of the first conv's 16 channels at the ``off`` steps, restored at ``on``."""

    def __init__(self, off: tuple[int, ...], on: tuple[int, ...]) -> None:
        self.off, self.on, self.saved = off, on, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        bias = pl_module.net[0].bias
        with torch.no_grad():
            if trainer.global_step in self.off:
                self.saved = bias[:12].clone()
                bias[:12] = -50.0
            elif trainer.global_step in self.on and self.saved is not None:
                bias[:12] = self.saved


def test_diagnosis_runs_dead_units_recover_to_a_note_and_die_again_as_new(tmp_path):
    L.seed_everything(0, verbose=False)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
        nn.Flatten(), nn.Linear(16 * 49, 10),
    )  # fmt: skip
    data = SyntheticDigitsDataModule(train_size=64 * 40, val_size=64, batch_size=64)
    monitor = ActivationMonitor(every_n_steps=5, layers=["net.1"])
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=40, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[monitor, SwitchUnits(off=(10, 30), on=(20,))],
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Net(net, lr=0.01), data)
    found = [(f.kind, f.severity, f.step) for f in findings_of(trainer)]
    # the first episode's problem was replaced by its recovery note; the second is new
    assert found == [("dead_units", "note", 25), ("dead_units", "problem", 35)]
    recovered = findings_of(trainer)[0]
    assert recovered.message.startswith("Dead units recovered by step 25 (epoch 0): `net.1` 0%")
    assert "Reported at step 15 as a problem" in recovered.message
    assert recovered.figures["reported_step"] == 15 and recovered.figures["net.1"] == 0.0
    said = [str(w.message) for w in caught if str(w.message).startswith("Dead units")]
    assert len(said) == 2 and all("`net.1`: 75% of units dead" in m for m in said)
    text = texts(events(tmp_path), "activations/diagnosis")
    assert [t.split(":")[0] for t in text] == [
        "Dead units at step 15 (epoch 0)", "Dead units recovered by step 25 (epoch 0)",
        "Dead units at step 35 (epoch 0)",
    ]  # fmt: skip


class NoZeroGrad(Net):
    """``optimizer_zero_grad`` overridden to do nothing: gradients pile up step after step."""

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
        pass


class ManualNet(Net):
    """Manual optimisation, gradients accumulated over 2 batches on purpose."""

    def __init__(self, net: nn.Module, lr: float) -> None:
        super().__init__(net, lr)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.manual_backward(loss)
        if batch_idx % 2 == 1:
            self.optimizers().step()
            self.optimizers().zero_grad()
        return loss


def test_diagnosis_runs_forgotten_zero_grad_is_found_at_the_first_log(tmp_path):
    trainer, said = fit(tmp_path, NoZeroGrad(leaky_cnn(), lr=0.01), steps=12, every=5)
    found = [f for f in findings_of(trainer) if f.kind == "gradients_not_reset"]
    assert [(f.step, f.severity) for f in found] == [(5, "problem")]
    assert found[0].figures["leftover_grad"] > 0
    (text,) = [t for t in texts(events(tmp_path / "tb"), "activations/diagnosis")
               if "gradients were not reset" in t]  # fmt: skip
    assert "optimizer_zero_grad" in text and "accumulate_grad_batches" in text
    assert any("gradients were not reset" in m for m in said)


@pytest.mark.parametrize("how", ["automatic", "accumulate", "manual"])
def test_diagnosis_runs_gradients_reset_or_accumulated_on_purpose_are_quiet(tmp_path, how):
    model = ManualNet(leaky_cnn(), lr=0.01) if how == "manual" else Net(leaky_cnn(), lr=0.01)
    L.seed_everything(0, verbose=False)
    monitor = ActivationMonitor(every_n_steps=3)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=9, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=False, callbacks=[monitor], accumulate_grad_batches=2 if how == "accumulate" else 1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, SyntheticDigitsDataModule(train_size=64 * 20, val_size=64))
    assert monitor.events == 3
    assert [f for f in findings_of(trainer) if f.kind == "gradients_not_reset"] == []


class QuietManual(Net):
    """Manual optimisation whose ``training_step`` returns nothing (a GAN-like loop)."""

    def __init__(self, net: nn.Module, lr: float, optimizers: int = 1) -> None:
        super().__init__(net, lr, momentum=0.0)
        self.automatic_optimization, self.count = False, optimizers

    def training_step(self, batch, batch_idx):
        for opt in self.optimizers() if self.count > 1 else [self.optimizers()]:
            opt.zero_grad()
            self.manual_backward(F.cross_entropy(self(batch[0]), batch[1]))
            opt.step()

    def configure_optimizers(self):
        return [torch.optim.SGD(self.parameters(), lr=self.lr) for _ in range(self.count)]


def test_diagnosis_runs_manual_loop_returning_nothing_still_finds_divergence(tmp_path):
    trainer, _ = fit(tmp_path, QuietManual(leaky_cnn(), lr=8.0), steps=40, every=10)
    assert "divergence" in [f.kind for f in problems(findings_of(trainer))]


class TwoBackwards(QuietManual):
    """Manual optimisation: the loss's backward, then a small logit penalty's (no return)."""

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        logits = self(batch[0])
        self.manual_backward(F.cross_entropy(logits, batch[1]), retain_graph=True)
        self.manual_backward(1e-3 * logits.pow(2).mean())
        opt.step()


def test_diagnosis_runs_a_steps_backwards_are_read_as_one_loss(tmp_path):
    # setups hunt 40: the penalty's backward, read as the whole loss, was told as a
    # divergence ("the loss spiked to 0.00212") while the cross-entropy fell 2.28 -> 1.25
    trainer, _ = fit(tmp_path, TwoBackwards(leaky_cnn(), lr=0.05), steps=40, every=10)
    assert problems(findings_of(trainer)) == []
    monitor = next(c for c in trainer.callbacks if isinstance(c, ActivationMonitor))
    losses = [loss for _, loss in monitor.diagnosis.loss.read()]
    assert min(losses) > 0.1  # the cross-entropy's level, not the penalty's (~1e-3)


class ClosureSteps(QuietManual):
    """Manual optimisation under LBFGS: its closure evaluated several times a step."""

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(self(batch[0]), batch[1])
            self.manual_backward(loss)
            return loss

        opt.step(closure=closure)

    def configure_optimizers(self):
        return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=5)


def test_diagnosis_runs_a_closures_evaluations_are_read_as_its_first_loss(tmp_path):
    # setups hunt 41: each evaluation's backward summed, "the training loss is ~11x the
    # model's own cross-entropy ... summed over the batch instead of averaged"
    trainer, _ = fit(tmp_path, ClosureSteps(leaky_cnn(), lr=0.1), steps=10, every=5)
    monitor = next(c for c in trainer.callbacks if isinstance(c, ActivationMonitor))
    losses = [loss for _, loss in monitor.diagnosis.loss.read()]
    losses.sort()  # one evaluation's cross-entropy, not max_iter of them
    assert losses and losses[len(losses) // 2] < 1.5 * math.log(10)
    assert not [f for f in findings_of(trainer) if "summed over the batch" in f.message]


class PerItemBackward(QuietManual):
    """Manual optimisation whose backward sees a loss per item (``gradient=`` given)."""

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        losses = F.cross_entropy(self(batch[0]), batch[1], reduction="none")
        self.manual_backward(losses, gradient=torch.full_like(losses, 1 / len(losses)))
        opt.step()


def test_diagnosis_runs_a_loss_per_item_says_why_divergence_did_not_run(tmp_path):
    # setups hunt 41: the reason given was "no `manual_backward` ran" though one ran each step
    trainer, _ = fit(tmp_path, PerItemBackward(leaky_cnn(), lr=0.01), steps=10, every=5)
    check = checks_of(trainer)[("ActivationMonitor", "divergence")]
    assert not check.ran and "the loss its backward saw is not one value" in check.why


def test_diagnosis_runs_two_optimizers_without_a_loss_say_divergence_did_not_run(tmp_path):
    gan_like = QuietManual(leaky_cnn(), lr=0.01, optimizers=2)
    trainer, said = fit(tmp_path, gan_like, steps=10, every=5)
    check = checks_of(trainer)[("ActivationMonitor", "divergence")]
    assert not check.ran and "returned none" in check.why and "2 optimizers" in check.why
    assert len([m for m in said if "the divergence check did not run" in m]) == 1


class WithGenerator(Net):
    """A GAN-like module: ``G`` is trained elsewhere, ``forward`` runs the discriminator."""

    def __init__(self) -> None:
        super().__init__(leaky_cnn(), lr=0.01)
        self.G = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 28 * 28))


def test_diagnosis_runs_layers_forward_never_calls_are_said_once(tmp_path):
    _, said = fit(tmp_path, WithGenerator(), steps=10, every=5)
    told = [m for m in said if "not called by the model's forward()" in m]
    assert len(told) == 1 and "`G.1`" in told[0]


class ScaledOnTransfer(TinyCNN):
    """Raw 0..255 pixels, scaled in ``on_after_batch_transfer`` (the probes skip it)."""

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch
        return x / 255, y


def test_diagnosis_runs_raw_pixels_scaled_in_a_batch_hook_are_no_note(tmp_path):
    # setups hunt 24: uint8 images scaled in `on_after_batch_transfer` got "the probe images
    # reach |x| = 255 ... raw pixel values perhaps" though training saw them scaled
    data = [
        DataLoader(TensorDataset(x.abs() * 255, y), batch_size=8)
        for x, y in (loader.dataset.tensors for loader in loaders())
    ]
    monitor = ActivationMonitor(every_n_steps=2)
    trainer, _, said = monitors_fit(tmp_path, [monitor], model=ScaledOnTransfer(lr=0.01), data=data)
    assert monitor.events > 0
    assert [f for f in findings_of(trainer) if f.kind == "unnormalised_inputs"] == []
    assert any("without the run's `module.on_after_batch_transfer`" in m for m in said)


@pytest.mark.parametrize("scale", [1.0, 255.0, 1 / 255])
def test_diagnosis_runs_raw_pixel_inputs_are_a_note_naming_their_scale(tmp_path, scale):
    data = [
        DataLoader(TensorDataset(x.abs() * scale, y), batch_size=8)
        for x, y in (loader.dataset.tensors for loader in loaders())
    ]
    monitor = ActivationMonitor(every_n_steps=2)
    trainer, _, _ = monitors_fit(tmp_path, [monitor], model=TinyCNN(lr=0.01), data=data)
    found = [f for f in findings_of(trainer) if f.kind == "unnormalised_inputs"]
    if scale == 1.0:
        assert found == []
    elif scale > 1:
        (note,) = found
        assert note.severity == "note" and note.figures["input_max"] > 20 * 8
        assert "raw pixel values perhaps" in note.message and "x / 255" in note.message
    else:  # scaled twice: the images barely vary
        (note,) = found
        assert note.severity == "note" and note.figures["input_std"] < 1e-2
        assert note.message.startswith("The inputs barely vary: the probe images have a")


@pytest.mark.parametrize("layers", ["auto", "*"])  # "*": also the Sequential holding it
def test_diagnosis_runs_relu_on_the_logits_is_named_not_dead_units(tmp_path, layers):
    # held out: a ReLU after the last Linear, 6-7 of 10 classes at 0 (val 47-49% vs 94%);
    # the tool said only "30% dead ... a note, not a problem" at the first log
    model = Net(nn.Sequential(leaky_cnn(), nn.ReLU()), lr=0.05)
    trainer, said = fit(tmp_path, model, 50, 10, layers=layers)
    (found,) = [f for f in findings_of(trainer) if f.kind == "output_activation"]
    assert found.severity == "problem"
    assert "the model's output passes through `net.1`" in found.message
    stuck = int(found.figures["dead_outputs"])
    assert 1 <= stuck <= 10 and found.figures["share"] == pytest.approx(stuck / 10)
    assert f"{stuck} of its outputs" in found.message
    later = [f for f in findings_of(trainer) if f.kind == "dead_units" and f.step > found.step]
    assert not [f for f in later if "`net.1`" in f.message]  # its units are classes, told once
    assert [m for m in said if "passes through `net.1`" in m] == [found.message]
    run = events(tmp_path)
    dead = {e.step: e.value for e in run.Scalars("activations/net.1/dead_fraction")}
    assert dead[found.step] == pytest.approx(found.figures["share"])


def test_diagnosis_runs_relu_on_class_maps_before_a_global_pool_is_an_output_activation(tmp_path):
    # held out: torchvision SqueezeNet (1x1 conv to the classes, ReLU, global average pool)
    # kept 6 of 10 class maps at 0 and val accuracy at 22% for 10 epochs; the ReLU's output
    # is not the model's, its pooled output is, and it was told as dead units
    head = nn.Conv2d(16, 10, 1)
    with torch.no_grad():
        head.bias[:4] = -50.0  # classes 0-3 never above 0
    body = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.LeakyReLU(0.01), nn.MaxPool2d(2),
        head, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip
    trainer, _ = fit(tmp_path, Net(body, lr=0.01), 20, 10)
    (found,) = [f for f in findings_of(trainer) if f.kind == "output_activation"]
    assert found.severity == "problem" and found.step <= 20  # the second log at the latest
    assert "the model's output passes through `net.4`" in found.message
    assert "classes 0, 1, 2, 3" in found.message
    dead = [f for f in findings_of(trainer) if f.kind == "dead_units"]
    assert not [f for f in dead if "`net.4`" in f.message]


@pytest.mark.parametrize("layers", ["*", "Conv2d", "Linear"])
def test_diagnosis_runs_watched_logits_and_convs_before_batchnorm_hold_no_dead_units(
    tmp_path, layers
):
    # hunt 25: `layers=["fc"]` on a plain classifier got "the model's output passes
    # through `fc`, an activation ...: remove it" (no activation there, no logit at 0), and
    # convs whose BatchNorm re-centres a bias of -3 "81-100% dead" (their ReLUs: 0%)
    body = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip
    with torch.no_grad():
        body[0].bias.fill_(-3.0), body[4].bias.fill_(-3.0)
        body[9].bias[:4] = -20.0  # four classes' logits below 0 on every image
    trainer, said = fit(tmp_path, Net(body, lr=0.01), 20, 10, layers=layers)
    assert problems(findings_of(trainer)) == []
    assert not [m for m in said if "dead" in m or "passes through" in m]
    run = events(tmp_path)
    logged = {t.split("/")[1] for t in run.Tags()["scalars"] if t.endswith("dead_fraction")}
    assert logged >= {"*": {"net.0", "net.2", "net.9"}, "Conv2d": {"net.0"}}.get(layers, {"net.9"})
    if layers == "*":  # the ReLUs after the BatchNorms are measured as before: all alive
        assert all(e.value == 0 for e in run.Scalars("activations/net.2/dead_fraction"))


class FunctionalReluOut(nn.Module):
    """``F.relu`` on the logits in ``forward``: no module to watch at the output."""

    def __init__(self) -> None:
        super().__init__()
        self.body = leaky_cnn()

    def forward(self, x):
        return F.relu(self.body(x))


def test_diagnosis_runs_functional_relu_on_the_logits_is_an_output_activation(tmp_path):
    # hunt 19: `F.relu(model(x))` kept a CNN at 67-69% (95-97% without it), told nothing
    trainer, _ = fit(tmp_path, Net(FunctionalReluOut(), lr=0.05), 50, 10)
    (found,) = [f for f in findings_of(trainer) if f.kind == "output_activation"]
    assert found.severity == "problem"
    assert "the model's output is never below 0 (an activation that is 0 below zero" in (
        found.message
    )
    stuck = int(found.figures["dead_outputs"])
    assert 1 <= stuck <= 10 and f"{stuck} of its outputs" in found.message


class _Texts:
    """A sink that keeps the texts it is given (what ``ActivationMonitor._tell`` writes)."""

    active = True

    def __init__(self):
        self.written = []

    def text(self, tag, text, step):
        self.written.append((tag, step))


def test_diagnosis_runs_a_divergence_that_grows_is_one_finding_at_its_latest():
    # f_bn_sgd_lr3 (hunt 15): a spike told at step 9, the loss NaN at step 10 told at 20:
    # two `divergence` problems and "3 problem(s)" for one failure
    monitor, run = ActivationMonitor(), type("Run", (), {})()
    monitor._sink = _Texts()
    spike = Verdict("divergence", "problem", "Training diverged: a spike", {"spike_step": 1})
    nan = Verdict("divergence", "problem", "Training diverged: NaN", {"first_nonfinite_step": 10})
    with pytest.warns(UserWarning) as said:
        monitor._tell(run, [spike], 9, 0)
        monitor._tell(run, [nan], 20, 0)
    assert [str(w.message) for w in said] == [spike.message, nan.message]
    ((kind, severity, step, message),) = [
        (f.kind, f.severity, f.step, f.message) for f in findings_of(run)
    ]
    assert (kind, severity, step) == ("divergence", "problem", 20) and "NaN" in message


def test_diagnosis_runs_a_cause_told_at_a_log_is_named_by_the_problems_after_it_there():
    # held out: inputs divided by 255 twice; the `unnormalised_inputs` note and a dead-units
    # problem came at the same log (step 12), and the problem never named the inputs
    monitor, run = ActivationMonitor(), type("Run", (), {})()
    monitor._sink = _Texts()
    note = Verdict("unnormalised_inputs", "note", "The inputs barely vary", {})
    dead = Verdict("dead_units", "problem", "Dead units at step 12", {})
    with pytest.warns(UserWarning) as said:
        monitor._tell(run, [note, dead], 12, 0)
    (warned,) = [str(w.message) for w in said]
    assert warned.startswith("Dead units at step 12 This may follow from a note reported first")
    assert "(step 12, `unnormalised_inputs`)" in warned
    assert [f.kind for f in findings_of(run)] == ["unnormalised_inputs", "dead_units"]


def test_diagnosis_runs_a_nan_batch_is_named_as_the_divergence_cause(tmp_path):
    # setups hunt 20: three all-NaN training items made the loss NaN at step 3, told as
    # "the optimiser overshoots ... lower the learning rate"
    from tests.monitors import digits
    from tests.monitors import fit as fit_monitors

    x, y = digits(64, seed=1).tensors
    x = x.clone()
    x[20] = float("nan")  # the third batch of 8
    loaders = (DataLoader(TensorDataset(x, y), 8), DataLoader(digits(16, seed=2), 8))
    monitor = ActivationMonitor(every_n_steps=4)
    trainer, _, _ = fit_monitors(tmp_path, [monitor], data=loaders, limit_train_batches=8)
    found = [f for f in problems(findings_of(trainer)) if f.kind == "divergence"]
    assert found and "The training batch at step 2 held NaN/Inf inputs" in found[0].message
    assert "overshoots" not in found[0].message


class NaNWeightsAt(L.Callback):
    """Writes NaN into one weight of the second conv when ``epoch`` begins (a corrupt reload)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.net[3].weight[0, 0, 0, 0] = math.nan


def test_diagnosis_runs_nan_written_between_epochs_is_told_as_what_runs_between_them(tmp_path):
    # hunt 35: NaN written into conv2 by a callback at epoch 3 was told "first parameter:
    # `body.0.weight` ... one batch or one operation (a NaN/Inf in an input or label)"
    L.seed_everything(0, verbose=False)
    data = SyntheticDigitsDataModule(train_size=64 * 20, val_size=64, batch_size=64)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=3, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[ActivationMonitor(every_n_steps=10), NaNWeightsAt(2)],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Net(leaky_cnn(), lr=0.02), data)
    (diverged,) = [f for f in problems(findings_of(trainer)) if f.kind == "divergence"]
    assert diverged.figures["first_nonfinite_step"] == 40
    assert diverged.figures["first_nonfinite_parameter"] == "*"
    assert "Every parameter holds non-finite values" in diverged.message
    assert "first parameter with non-finite values" not in diverged.message.lower()
    assert "just before step 40, the first step of epoch 2" in diverged.message
    told = texts(events(tmp_path), "activations/diagnosis")
    assert any("what runs between two epochs" in t for t in told)
