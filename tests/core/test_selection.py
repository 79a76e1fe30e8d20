import lightning as L
import pytest
import torch
from torch import nn

from lightning_cnnviz.core.layer_types import CONV_TYPES
from lightning_cnnviz.core.selection import (
    clean_name,
    named_layers,
    of_type,
    resolve_layers,
    unwrap_model,
)
from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    assert_every_monitor_wrote,
    failures,
    fit,
    make_monitor,
)
from tests.tb import events


def net():
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU()),
        nn.Flatten(),
        nn.LazyLinear(3),
    )


def test_selection_exact_glob_and_type_names():
    model = net()
    assert list(resolve_layers(model, "0.0")) == ["0.0"]
    assert list(resolve_layers(model, "1.*")) == ["1.0", "1.1"]
    assert list(resolve_layers(model, "Conv2d")) == ["0.0", "1.0"]
    # model order, whatever the order of the patterns, and no duplicates
    assert list(resolve_layers(model, ["ReLU", "0.*"])) == ["0.0", "0.1", "1.1"]


def test_selection_type_name_matches_subclasses_as_parametrize_makes_them():
    model = net()
    weight_norm = torch.nn.utils.parametrizations.weight_norm
    weight_norm(model[1][0])  # its class is now `ParametrizedConv2d`, a Conv2d
    assert type(model[1][0]).__name__ == "ParametrizedConv2d"
    assert list(resolve_layers(model, "Conv2d")) == ["0.0", "1.0"]
    assert list(resolve_layers(model, "ParametrizedConv2d")) == ["1.0"]


def test_selection_unknown_pattern_lists_available_names():
    with pytest.raises(ValueError) as err:
        resolve_layers(net(), ["Conv2d", "features.*"])
    text = str(err.value)
    assert "'features.*'" in text and "'0.0' (Conv2d)" in text and "'3' (LazyLinear)" in text


def test_selection_auto_uses_the_monitor_rule():
    assert list(resolve_layers(net(), "auto", of_type(nn.ReLU))) == ["0.1", "1.1"]
    with pytest.raises(ValueError, match="not supported"):
        resolve_layers(net(), "auto")
    with pytest.raises(ValueError, match="found no suitable"):
        resolve_layers(net(), "auto", of_type(nn.GELU))


def test_selection_auto_leaves_out_a_weight_average_copy_kept_on_the_model():
    class EMAClassifier(nn.Module):  # its own name says EMA: it is still the model
        def __init__(self):
            super().__init__()
            self.net = net()
            self.ema = torch.optim.swa_utils.AveragedModel(self.net)

    model = EMAClassifier()
    assert list(resolve_layers(model, "auto", of_type(nn.ReLU))) == ["net.0.1", "net.1.1"]
    named = resolve_layers(model, "ema.module.*.1")  # asked for by name: given
    assert list(named) == ["ema.module.0.1", "ema.module.1.1"]
    copy_only = nn.Sequential()
    copy_only.add_module("ema", torch.optim.swa_utils.AveragedModel(net()))
    assert list(resolve_layers(copy_only, "auto", of_type(nn.ReLU))) == [
        "ema.module.0.1",
        "ema.module.1.1",
    ]  # nothing else to watch: the copy


def test_selection_strips_compile_prefix():
    model = net()
    compiled = torch.compile(model, backend="eager")
    assert list(resolve_layers(compiled, "Conv2d")) == ["0.0", "1.0"]
    assert clean_name("_orig_mod.features.0") == "features.0"
    assert clean_name("backbone._orig_mod.conv") == "backbone.conv"


def test_selection_shared_module_listed_once():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    assert list(named_layers(model)) == ["0", "1", "2"]


def test_selection_rejects_empty_list():
    with pytest.raises(ValueError, match="at least one"):
        resolve_layers(net(), [])


PROBE_CALLS: list[int] = []  # outside the model: the monitors put its own lists back after a pass


class NetInModule(L.LightningModule):
    """Keeps its network in ``self.module`` (not a wrapper) and normalises in ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.module = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 4),
        )

    def forward(self, x):
        if not self.training and self._trainer is not None and self._trainer.training:
            PROBE_CALLS.append(1)  # eval mode in the training loop: a monitor's probe pass
        return self.module((x - 0.5) / 0.25)

    _step = TinyCNN._step
    training_step = TinyCNN.training_step
    validation_step = TinyCNN.validation_step

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_selection_attribute_named_module_is_not_a_wrapper():
    model = NetInModule()
    assert unwrap_model(model) is model
    assert list(resolve_layers(model, "module.0")) == ["module.0"]
    # real wrappers still come off, by type
    assert unwrap_model(torch.compile(model, backend="eager")) is model
    assert unwrap_model(nn.DataParallel(model)) is model


def test_selection_model_with_a_module_attribute_probes_through_its_forward(tmp_path):
    model = NetInModule()
    PROBE_CALLS.clear()
    monitor = make_monitor("ActivationMonitor", layers="module.1")
    _, _, messages = fit(tmp_path, [monitor], model=model)
    assert not failures(messages, "ActivationMonitor"), messages
    assert list(monitor.selected) == ["module.1"] and monitor.events == 2
    scalars = events(tmp_path).Tags()["scalars"]
    assert any(t.startswith("activations/module.1/") for t in scalars), scalars
    # every probe pass went through the model's own forward (its normalisation included),
    # never straight into the network it keeps
    assert len(PROBE_CALLS) >= monitor.events


def test_selection_a_traced_model_is_named_as_torchscript_in_the_step_aside(tmp_path):
    # setups hunt 20: a module compiled by `torch.jit.trace` was called `torch.jit.script`
    import warnings

    class Traced(TinyCNN):
        def __init__(self) -> None:
            super().__init__()
            convs = nn.Sequential(self.conv1, self.bn1, self.relu1, self.pool1,
                                  self.conv2, self.bn2, self.relu2, self.pool2)  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.body = torch.jit.trace(convs, torch.zeros(2, 1, 16, 16))
            del self.conv1, self.bn1, self.relu1, self.pool1, self.conv2, self.bn2, self.relu2
            del self.pool2

        def forward(self, x):
            return self.fc(self.body(x).flatten(1))

    monitor = make_monitor("FeatureMapMonitor", layers="auto")
    fit(tmp_path, [monitor], model=Traced())
    assert monitor.disabled
    assert "`body` is compiled to TorchScript (`torch.jit.script` or `torch.jit.trace`)" in (
        monitor.aside_reason
    )


class ScriptedFirst(TinyCNN):
    """The first conv block compiled by ``torch.jit.script``; the rest plain modules."""

    def __init__(self) -> None:
        super().__init__()
        self.block = torch.jit.script(nn.Sequential(self.conv1, self.bn1, self.relu1))
        del self.conv1, self.bn1, self.relu1

    def forward(self, x):
        x = self.pool2(self.relu2(self.bn2(self.conv2(self.pool1(self.block(x))))))
        return self.fc(x.flatten(1))


def test_selection_a_scripted_block_left_out_is_said_once_per_run(tmp_path):
    # setups hunt 24: Kernel, FeatureMap and Activation monitors left a scripted conv out
    # without a word; only AttentionMonitor's step-aside named it
    monitors = [make_monitor(name) for name in ("KernelMonitor", "FeatureMapMonitor")]
    _, _, messages = fit(tmp_path, monitors, model=ScriptedFirst())
    said = [m for m in messages if "compiled to TorchScript" in m]
    assert said == [
        "lightning-cnnviz: the model's `block` is compiled to TorchScript (`torch.jit.script` "
        "or `torch.jit.trace`), which takes no hooks: the monitors leave it out"
    ]
    assert all(m.events > 0 and "block" not in " ".join(m.selected) for m in monitors)


class Deformable(TinyCNN):
    """The second conv a ``DeformConv2d`` whose offsets a small conv predicts."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.ops import DeformConv2d

        self.offset = nn.Conv2d(8, 2 * 3 * 3, 3, padding=1)
        self.conv2 = DeformConv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x, self.offset(x)))))
        return self.fc(x.flatten(1))


def test_selection_a_convolution_of_another_library_is_watched_as_one(tmp_path):
    # setups hunt 29: torchvision's DeformConv2d got no kernels and no feature maps (its
    # offset predictor was drawn instead), and naming it in KernelMonitor raised
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=Deformable())
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    images = events(tmp_path / "tb").Tags()["images"]
    assert "kernels/conv2" in images
    assert list(resolve_layers(Deformable(), "auto", of_type(*CONV_TYPES))) == [
        "conv1", "conv2", "offset"
    ]  # fmt: skip


class FunctionalConv(nn.Module):
    """A convolution by ``F.conv2d`` on a weight of its own: no ``kernel_size`` or ``stride``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.3)

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight, padding=1)


def test_selection_a_convolution_known_by_its_weight_alone():
    # setups hunt 30: custom convolutions without `stride`/`padding` attributes (an
    # `F.conv2d` or `F.unfold` module) got no kernels, and nothing named them
    net = nn.Sequential(FunctionalConv(1, 4), nn.ReLU(), nn.Bilinear(3, 3, 2), nn.Linear(2, 2))
    assert list(resolve_layers(net, "auto", of_type(*CONV_TYPES))) == ["0"]
    wide = nn.Module()
    wide.weight = nn.Parameter(torch.zeros(2, 2, 64, 64))  # a 64x64 "kernel": a table, no conv
    assert not isinstance(wide, CONV_TYPES)
