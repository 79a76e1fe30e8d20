import pytest
import torch
from torch import nn

from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    assert_every_monitor_wrote,
    failures,
    fit,
    make_monitor,
    raw_steps,
    section,
    written_tags,
)


class BuiltLate(TinyCNN):
    """TinyCNN whose layers exist only once Lightning calls ``configure_model``."""

    def __init__(self) -> None:
        super().__init__()
        self.built = {n: getattr(self, n) for n in ("conv1", "bn1", "conv2", "bn2", "fc")}
        for name in self.built:
            setattr(self, name, None)

    def configure_model(self) -> None:
        for name, module in self.built.items():
            if getattr(self, name) is None:
                setattr(self, name, module)

    def configure_optimizers(self):
        assert isinstance(self.conv1, nn.Conv2d)  # built by now
        return super().configure_optimizers()


class BuiltInSetup(BuiltLate):
    """The same, made in the module's ``setup`` (Lightning's other place for it)."""

    configure_model = TinyCNN.configure_model

    def setup(self, stage: str) -> None:
        BuiltLate.configure_model(self)


@pytest.mark.parametrize("model_class", [BuiltLate, BuiltInSetup])
def test_monitor_configure_model_layers_are_found_at_fit_start(tmp_path, model_class):
    # held out: a model built in configure_model (called after the callbacks' setup) left
    # Activation and Kernel "found no layer it can watch", FeatureMap and GradCAM failing;
    # setups hunt 23: the same for one built in the module's `setup`
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=model_class())
    tags = written_tags(tmp_path)
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name) and not monitor.disabled, name
        assert monitor.events > 0, name
        if monitor.watches_layers:
            assert monitor.selected, name
            written = {t for kind in ("images", "scalars") for t in tags[kind]}
            assert any(t.startswith(section(name) + "/") for t in written), name
    assert not [m for m in messages if "found no layer" in m]


class LazyCNN(TinyCNN):
    """TinyCNN of lazy modules: their weights take shape at the run's first forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.LazyConv2d(8, 3, padding=1), nn.LazyBatchNorm2d()
        self.conv2, self.fc = nn.LazyConv2d(8, 3, padding=1), nn.LazyLinear(4)


def test_monitor_configure_model_lazy_modules_are_watched_once_made(tmp_path):
    # held out (setups hunt 22): every monitor made `fit` raise in its setup (the unmade
    # weights cannot be read), and a pass before the first step would make them from a
    # fork of the random state: other weights than without the monitors
    torch.manual_seed(0)
    bare = LazyCNN()
    fit(tmp_path / "bare", [], model=bare, logger=False, num_sanity_val_steps=0)
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    torch.manual_seed(0)
    watched = LazyCNN()
    _, _, messages = fit(tmp_path, monitors, model=watched, num_sanity_val_steps=0)
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert all(m.selected for m in monitors if m.watches_layers)
    for key, value in bare.state_dict().items():
        assert torch.equal(value, watched.state_dict()[key]), key
    overfitting = next(m for m in monitors if type(m).__name__ == "OverfittingMonitor")
    assert overfitting._step_why == ""  # the first (lazy) convolution's inputs were read


class Surgery(TinyCNN):
    """TinyCNN whose ``conv2`` is made anew at epoch 2 (a block re-initialised mid-fit)."""

    def on_train_epoch_start(self):
        if self.current_epoch == 2:
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.trainer.optimizers[0].add_param_group({"params": list(self.conv2.parameters())})


def test_monitor_configure_model_a_layer_replaced_mid_fit_is_followed(tmp_path):
    # held out (setups hunt 22): the monitors kept the discarded `conv2`, told it "frozen"
    # with "remove the `.detach()`", and feature maps skipped it
    from lightning_cnnviz.core.findings import findings_of

    monitors = [
        make_monitor(name, every_n_steps=2) for name in ("KernelMonitor", "FeatureMapMonitor")
    ]
    trainer, model, messages = fit(tmp_path, monitors, model=Surgery(), max_epochs=4)
    for monitor in monitors:
        assert monitor.selected["conv2"] is model.conv2 and not monitor.disabled
    said = [m for m in messages if "`conv2` replaced or removed" in m]
    assert len(said) == 2 and "from step 10" in said[0]  # made at step 8, the next event
    assert not [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert not [m for m in messages if "skipped" in m]


class Renamed(TinyCNN):
    """TinyCNN whose ``conv2`` moves to ``conv2_new`` at epoch 2 (the same module, renamed)."""

    def forward(self, x):
        conv2 = self.conv2 if "conv2" in self._modules else self.conv2_new
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(conv2(x))))
        return self.fc(x.flatten(1))

    def on_train_epoch_start(self):
        if self.current_epoch == 2:
            self.conv2_new = self._modules.pop("conv2")


@pytest.mark.parametrize("name", ["KernelMonitor", "FeatureMapMonitor", "GradCAMMonitor"])
def test_monitor_configure_model_a_named_layer_gone_mid_fit_steps_aside(tmp_path, name):
    # setups hunt 68: `layers=["conv2"]` renamed mid-fit stopped the fit with
    # LayerNotFoundError, after saying "it watches the new one"
    from tests.tb import events, texts

    monitor = make_monitor(name, layers="conv2", every_n_steps=2)
    trainer, _, messages = fit(tmp_path, [monitor], model=Renamed(), max_epochs=4)
    assert trainer.global_step == 16 and monitor.disabled
    assert "`conv2` replaced by step 10, and then: " in monitor.aside_reason
    assert "matches no module" in monitor.aside_reason
    assert not [m for m in messages if "it watches" in m]
    (summary,) = texts(events(tmp_path / "tb"), "cnnviz/summary")
    assert name in summary and "`conv2` replaced by step 10" in summary
    own = [s for tag, s in raw_steps(tmp_path / "tb").items() if tag.startswith(section(name))]
    steps = {step for found in own for step in found}
    assert steps and max(steps) < 10, steps  # wrote until the surgery


@pytest.mark.parametrize("name", ["KernelMonitor", "FeatureMapMonitor"])
def test_monitor_configure_model_named_layers_go_on_without_the_one_gone(tmp_path, name):
    # setups hunt 70: `layers=["conv1", "conv2"]`, `conv2` renamed mid-fit: the whole
    # monitor stepped aside, though `conv1` was still there to draw
    monitor = make_monitor(name, layers=["conv1", "conv2"], every_n_steps=2)
    _, _, messages = fit(tmp_path, [monitor], model=Renamed(), max_epochs=4)
    assert not monitor.disabled and list(monitor.selected) == ["conv1"]
    said = [m for m in messages if "no longer selects a module it can watch by step 10" in m]
    assert len(said) == 1 and "`conv2`" in said[0] and "watches `conv1`" in said[0], messages
    own = raw_steps(tmp_path / "tb")
    conv1 = {s for tag, found in own.items() if "conv1" in tag for s in found}
    conv2 = {s for tag, found in own.items() if "conv2" in tag for s in found}
    assert max(conv1) == 16 and conv2 and max(conv2) < 10, (conv1, conv2)
    fit(tmp_path / "again", [monitor], max_epochs=1)  # a new fit starts from `layers` again
    assert list(monitor.selected) == ["conv1", "conv2"]


class Wrapped(TinyCNN):
    """TinyCNN whose ``conv1`` is wrapped in a ``Sequential`` at epoch 2 (an adapter)."""

    def on_train_epoch_start(self):
        if self.current_epoch == 2:
            self.conv1 = nn.Sequential(self.conv1, nn.Identity())


def test_monitor_configure_model_a_named_layer_wrapped_leaves_the_others_watched(tmp_path):
    # setups hunt 72: `conv1` wrapped mid-fit ("must select Conv... modules, got ['conv1']")
    # stepped KernelMonitor aside; `conv2`, untouched, was never drawn again
    monitor = make_monitor("KernelMonitor", layers=["conv1", "conv2"], every_n_steps=2)
    _, _, messages = fit(tmp_path, [monitor], model=Wrapped(), max_epochs=4)
    assert not monitor.disabled and list(monitor.selected) == ["conv2"]
    said = [m for m in messages if "no longer selects a module it can watch by step 10" in m]
    assert len(said) == 1 and "`conv1`" in said[0], messages
    assert max(raw_steps(tmp_path / "tb")["kernels/conv2/relative_change"]) == 16


def test_monitor_configure_model_activations_follow_a_layer_renamed_mid_fit(tmp_path):
    # setups hunt 68: the gradient read before the event looked `conv2` up by its old name
    # (KeyError): "ActivationMonitor failed and steps aside"
    monitor = make_monitor("ActivationMonitor", every_n_steps=2)
    _, _, messages = fit(tmp_path, [monitor], model=Renamed(), max_epochs=4)
    assert not monitor.disabled and not failures(messages, "ActivationMonitor"), messages
    assert [m for m in messages if "`conv2` replaced or removed" in m]
    steps = raw_steps(tmp_path / "tb")  # the gradients of the renamed layer read on
    assert steps["activations/relu2/grad_norm"][-3:] == [12, 14, 16], steps
    assert steps["activations/conv2_new/grad_rms"] == [12, 14, 16], steps


class Appended(TinyCNN):
    """TinyCNN that gains a conv block after ``pool2`` at epoch 2 (a layer added mid-fit)."""

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        if "extra" in self._modules:
            x = self.extra(x)
        return self.fc(x.flatten(1))

    def on_train_epoch_start(self):
        if self.current_epoch == 2:
            self.extra = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.trainer.optimizers[0].add_param_group({"params": list(self.extra.parameters())})


def test_monitor_configure_model_layers_added_mid_fit_are_found_under_auto(tmp_path):
    # setups hunt 69: a block appended at epoch 2 got no kernels, maps or statistics, and
    # Grad-CAM stayed on the layer before it; nothing was said
    monitors = [make_monitor(n, every_n_steps=2) for n in ("KernelMonitor", "ActivationMonitor")]
    _, _, messages = fit(tmp_path, monitors, model=Appended(), max_epochs=4)
    said = [m for m in messages if "the model's modules changed by step 10" in m]
    assert len(said) == 2 and "`extra.0`" in said[0], said
    steps = raw_steps(tmp_path / "tb")
    assert steps["kernels/extra.0/relative_change"] == [12, 14, 16], steps.keys()
    assert steps["activations/extra.1/dead_fraction"] == [10, 12, 14, 16]
    assert all(not m.disabled for m in monitors)


class HiddenByClassAttribute(TinyCNN):
    """TinyCNN whose class holds ``conv1 = None``: ``self.conv1`` reads None, the layer stays."""

    conv1 = None

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self._modules["conv1"](x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(x.flatten(1))


def test_monitor_configure_model_a_class_attribute_named_like_a_layer_is_no_replacement(
    tmp_path,
):
    # setups hunt 55: three monitors said `conv1` was "replaced by a new module" at every
    # event of a healthy run (the check went by attribute, the class's None)
    monitors = [
        make_monitor(name, every_n_steps=2) for name in ("KernelMonitor", "ActivationMonitor")
    ]
    _, model, messages = fit(tmp_path, monitors, model=HiddenByClassAttribute())
    assert model.conv1 is None
    assert not [m for m in messages if "replaced or removed" in m]
    kernels, activations = monitors
    assert kernels.selected["conv1"] is model._modules["conv1"] and not kernels.disabled
    assert "relu1" in activations.selected and not activations.disabled
    assert any(t.startswith("kernels/conv1") for t in written_tags(tmp_path)["images"])
