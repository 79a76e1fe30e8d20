"""Which layers a monitor watches: layers the probe pass never calls are passed over."""

from __future__ import annotations

from torch import nn

from lightning_cnnviz import EmbeddingMonitor, FeatureMapMonitor
from lightning_cnnviz.reference import MNISTClassifier
from tests.monitors import ALL_MONITORS, TinyCNN, assert_every_monitor_wrote, fit, make_monitor
from tests.tb import events, image_tags, layer_lists, projector_tags, texts
from tests.views_helpers import run


class TrainingOnlyHeads(MNISTClassifier):
    """Auxiliary heads (a conv, a Linear defined last) called in training mode only."""

    def __init__(self) -> None:
        super().__init__()
        self.aux_conv = nn.Conv2d(1, 4, 3)
        self.aux = nn.Linear(10, 10)

    def forward(self, x):
        logits = super().forward(x)
        if self.training:  # an Inception-style side output, left out of the loss here
            self.aux(logits)
            self.aux_conv(x)
        return logits


def test_monitor_layers_auto_passes_over_a_layer_only_training_calls(tmp_path):
    # setups hunt 23: `auto` picked the training-only `aux` Linear; nothing was written
    # and the summary listed the monitor among the checks that ran
    monitor = EmbeddingMonitor(max_points=64, num_samples=10, every_n_steps=4)
    run(tmp_path, [monitor], model=TrainingOnlyHeads(), steps=8)
    assert not monitor.disabled and list(monitor.selected) == ["fc2"]
    acc = events(tmp_path)
    assert [e.step for e in acc.Scalars("embeddings/fc2/class_separation")] == [4, 8]
    assert any("fc2" in tag for tag in projector_tags(tmp_path))
    assert any("`fc2`" in text and "`aux`" not in text for text in layer_lists(acc))


def test_monitor_layers_named_layer_never_called_steps_aside_saying_so(tmp_path):
    monitor = FeatureMapMonitor(layers="aux_conv", every_n_steps=4, num_samples=4)
    run(tmp_path, [monitor], model=TrainingOnlyHeads(), steps=8)
    assert monitor.disabled and monitor.events == 0
    assert "`aux_conv` is not called by the model's forward() in eval mode" in monitor.aside_reason
    acc = events(tmp_path)
    assert not [tag for tag in image_tags(acc) if tag.startswith("feature_maps/")]
    (summary,) = texts(acc, "cnnviz/summary")
    assert "FeatureMapMonitor" in summary and "aux_conv" in summary


def test_monitor_layers_a_glob_over_every_layer_keeps_those_the_monitor_can_read(tmp_path):
    # setups hunt 25: `layers="*"` (README: globs choose layers) made KernelMonitor stop the
    # fit (it matched BatchNorm, ReLU, pooling) and GradCAMMonitor "fail" on the Linear head
    from lightning_cnnviz import GradCAMMonitor, KernelMonitor
    from tests.monitors import fit

    kernels = KernelMonitor(layers="*", every_n_steps=2)
    cams = GradCAMMonitor(layers="*", every_n_steps=2, num_samples=4, misclassified=False)
    _, _, said = fit(tmp_path, [kernels, cams])
    assert not kernels.disabled and kernels.events == 2 and set(kernels.selected) == {
        "conv1", "conv2", "fc"}  # fmt: skip
    assert not cams.disabled and cams.events == 2 and "fc" not in cams.selected
    assert [m for m in said if m.startswith("KernelMonitor: leaves out `bn1`")]
    assert [m for m in said if m.startswith("GradCAMMonitor: leaves out `fc`: Grad-CAM needs")]
    scalars = events(tmp_path).Tags()["scalars"]
    layers = {
        t.split("/")[2] for t in scalars if t.startswith("gradcam/val/") and t.count("/") == 3
    }
    assert {"conv2", "relu2", "pool2"} <= layers and "fc" not in layers


class HashNamed(TinyCNN):
    """Blocks in a ``ModuleDict`` whose keys hold a ``#`` (``"conv#0"``), one shared ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({"conv#0": self.conv1, "conv#1": self.conv2})
        self.act = nn.ReLU()
        del self.conv1, self.conv2, self.relu1, self.relu2

    def forward(self, x):
        x = self.pool1(self.act(self.bn1(self.blocks["conv#0"](x))))
        x = self.pool2(self.act(self.bn2(self.blocks["conv#1"](x))))
        return self.fc(x.flatten(1))


def test_monitor_layers_module_names_holding_a_hash_are_not_read_as_call_sites(tmp_path):
    # setups hunt 29: `conv#0` was cut to `conv`: "replaced by a new module", "not called
    # by forward()", and Kernel, Activation and GradCAM stepped aside on a KeyError
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=HashNamed())
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert not [m for m in messages if "replaced" in m or "not called" in m], messages
    layers = "\n".join(texts(events(tmp_path / "tb"), "cnnviz/layers"))
    assert "`blocks.conv#0` (Conv2d)" in layers and "`act#1` (ReLU)" in layers, layers
