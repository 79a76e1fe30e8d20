"""Every monitor on torchvision architectures (random weights, no downloads, 64x64 inputs).

One fit per architecture with every monitor attached at once (two optimizer
steps, one logging event each, one validation); the tests per (architecture,
monitor) read that run back: the monitor ran and wrote under its section, and its
``auto`` selection is sensible for the architecture. Together the architectures
cover: an activation module reused within a block (resnet18's BasicBlock ``relu``),
functional activations (densenet's final ``F.relu``, googlenet's ``F.relu`` in every
BasicConv2d), channel concatenation (densenet, squeezenet's Fire, googlenet's
Inception), depthwise/grouped convolutions (mobilenet_v3_small, efficientnet_b0,
convnext), non-ReLU activations (Hardswish, SiLU, GELU), LayerNorm (convnext) and a
namedtuple output in training (googlenet with ``aux_logits=True``: ``output_key="logits"``).

``AUTO_TABLE`` collects what ``auto`` picked; ``test_zoo_torchvision_auto_table`` prints it
(``pytest -s``) and writes it to ``$CNNVIZ_ZOO_TABLE`` when that is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.densenet import DenseNet
from torchvision.models.googlenet import GoogLeNetOutputs

from lightning_cnnviz.core.layer_types import ACTIVATION_TYPES, POOL_TYPES
from lightning_cnnviz.core.selection import named_layers
from tests.monitors import (
    ALL_MONITORS,
    digits,
    failures,
    fit,
    layers_text,
    make_monitor,
    section,
    tags_of,
    written_tags,
)

pytestmark = pytest.mark.timeout(600)

NUM_CLASSES, SIDE = 10, 64


def _googlenet() -> nn.Module:
    return tvm.googlenet(weights=None, num_classes=NUM_CLASSES, aux_logits=True, init_weights=True)


def _densenet() -> nn.Module:  # densenet121's blocks, fewer and narrower
    return DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2,
                    num_classes=NUM_CLASSES)  # fmt: skip


def _convnext() -> nn.Module:  # convnext_tiny's blocks (7x7 depthwise, LayerNorm, GELU), narrower
    setting = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, None, 1)]
    return ConvNeXt(setting, num_classes=NUM_CLASSES)


# name -> (builder, activation types `auto` must find, what the arch covers)
ARCHS: dict[str, tuple[Callable[[], nn.Module], set[str], str]] = {
    "resnet18": (
        lambda: tvm.resnet18(weights=None, num_classes=NUM_CLASSES),
        {"ReLU"},
        "ReLU module reused within a BasicBlock",
    ),
    "mobilenet_v3_small": (
        lambda: tvm.mobilenet_v3_small(weights=None, num_classes=NUM_CLASSES),
        {"ReLU", "Hardswish", "Hardsigmoid"},
        "Hardswish, depthwise convs, squeeze-excitation",
    ),
    "efficientnet_b0": (
        lambda: tvm.efficientnet_b0(weights=None, num_classes=NUM_CLASSES),
        {"SiLU", "Sigmoid"},
        "SiLU, depthwise convs, squeeze-excitation",
    ),
    "densenet_small": (_densenet, {"ReLU"}, "channel concatenation, functional relu at the end"),
    "squeezenet1_1": (
        lambda: tvm.squeezenet1_1(weights=None, num_classes=NUM_CLASSES),
        {"ReLU"},
        "Fire concatenation, conv logits head",
    ),
    "convnext_small": (_convnext, {"GELU"}, "GELU, LayerNorm, 7x7 depthwise"),
    "googlenet": (_googlenet, set(), "namedtuple output in training, functional relu, concat"),
}


class TorchvisionModule(L.LightningModule):
    """Wraps a torchvision classifier as ``self.net``; handles GoogLeNetOutputs in training.

    ``always_tuple`` makes eval-mode outputs a namedtuple too, so that monitors'
    probe passes go through ``output_key`` as well.
    """

    def __init__(self, net: nn.Module, always_tuple: bool = False) -> None:
        super().__init__()
        self.net, self.always_tuple = net, always_tuple

    def forward(self, x: Tensor) -> Any:
        out = self.net(x)
        if self.always_tuple and isinstance(out, Tensor):
            out = GoogLeNetOutputs(out, None, None)
        return out

    def _loss(self, out: Any, y: Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(out, Tensor):
            return F.cross_entropy(out, y), out
        loss = F.cross_entropy(out.logits, y)
        for aux in (out.aux_logits1, out.aux_logits2):
            if aux is not None:
                loss = loss + 0.3 * F.cross_entropy(aux, y)
        return loss, out.logits

    def training_step(self, batch, batch_idx):
        loss, logits = self._loss(self(batch[0]), batch[1])
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        self.log("train/acc", (logits.argmax(1) == batch[1]).float().mean(), on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logits = self._loss(self(batch[0]), batch[1])
        self.log("val/loss", loss)
        self.log("val/acc", (logits.argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


@dataclass
class ZooRun:
    arch: str
    model: TorchvisionModule
    monitors: dict[str, Any]
    warnings: list[str]
    logdir: str
    shapes: dict[str, tuple[int, ...]]  # output shape of every module (eval forward)
    layers: dict[str, list[str]] = field(default_factory=dict)
    tags: dict[str, set[str]] = field(default_factory=dict)


AUTO_TABLE: dict[str, dict[str, str]] = {}


def output_shapes(model: nn.Module, x: Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    layers = named_layers(model)

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, out: Any) -> None:
            if isinstance(out, Tensor):
                shapes.setdefault(name, tuple(out.shape))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return shapes


@pytest.fixture(scope="module", params=list(ARCHS))
def zoo(request, tmp_path_factory) -> ZooRun:
    arch = request.param
    torch.manual_seed(0)
    model = TorchvisionModule(ARCHS[arch][0](), always_tuple=arch == "googlenet")
    monitors = {n: make_monitor(n, output_key="logits") for n in ALL_MONITORS}
    train = DataLoader(digits(8, channels=3, side=SIDE, classes=NUM_CLASSES, seed=1), batch_size=4)
    val = DataLoader(digits(8, channels=3, side=SIDE, classes=NUM_CLASSES, seed=2), batch_size=4)
    tmp = tmp_path_factory.mktemp(arch)
    _, model, messages = fit(tmp, list(monitors.values()), model=model, data=(train, val),
                             limit_train_batches=2)  # fmt: skip
    shapes = output_shapes(model, train.dataset.tensors[0][:2])
    run = ZooRun(arch, model, monitors, messages, str(tmp), shapes)
    run.layers, run.tags = layers_text(tmp), written_tags(tmp)
    if os.environ.get("CNNVIZ_TIMINGS"):
        print(arch, {n: round(m.timings.get("total", 0.0), 2) for n, m in monitors.items()})
    return run


@pytest.mark.parametrize("name", ALL_MONITORS)
def test_zoo_torchvision_monitor_runs(zoo, name):
    monitor = zoo.monitors[name]
    assert not failures(zoo.warnings, name), failures(zoo.warnings, name)
    assert not monitor.disabled and monitor.events >= 1
    written = tags_of(zoo.tags, section(name) + "/")
    assert any(written.values()), f"{name} wrote nothing under {section(name)}/ on {zoo.arch}"
    for tag in zoo.tags["images"] | zoo.tags["scalars"]:
        assert "_orig_mod" not in tag and "net.net" not in tag


def _spatial(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] > 1 and shape[3] > 1


@pytest.mark.parametrize("name", ALL_MONITORS)
def test_zoo_torchvision_auto_selection_is_sensible(zoo, name):
    monitor = zoo.monitors[name]
    modules = named_layers(zoo.model)
    selected = dict(monitor.selected)
    AUTO_TABLE.setdefault(zoo.arch, {})[name] = _summary(name, selected, monitor)
    if not type(monitor).watches_layers:
        assert not selected
        return
    assert selected, f"{name} selected nothing on {zoo.arch}"
    assert all(n in modules and modules[n] is m for n, m in selected.items())
    logged = zoo.layers.get(name)
    assert logged is not None, f"no cnnviz/layers text from {name}"
    assert {s.split("#")[0] for s in logged} == set(selected)
    check = SENSIBLE.get(name)
    if check is not None:
        check(zoo, selected, monitor)


def _kernel(zoo: ZooRun, selected: dict[str, nn.Module], monitor: Any) -> None:
    convs = [n for n, m in named_layers(zoo.model).items() if isinstance(m, nn.Conv2d)]
    assert list(selected) == convs


def _activation(zoo: ZooRun, selected: dict[str, nn.Module], monitor: Any) -> None:
    expected_types = ARCHS[zoo.arch][1]
    acts = [n for n, m in named_layers(zoo.model).items() if isinstance(m, ACTIVATION_TYPES)]
    if expected_types:
        assert list(selected) == acts
        assert {type(m).__name__ for m in selected.values()} == expected_types
    else:  # googlenet: F.relu everywhere, no activation module -> conv/BN outputs, said so
        assert not acts and monitor.fallback
        assert all(not isinstance(m, ACTIVATION_TYPES) for m in selected.values())
    if zoo.arch == "resnet18":  # BasicBlock's relu runs twice: two call sites
        assert "net.layer1.0.relu" in monitor.shared
        assert {"net.layer1.0.relu#0", "net.layer1.0.relu#1"} <= set(monitor.sites())


def _feature_maps(zoo: ZooRun, selected: dict[str, nn.Module], monitor: Any) -> None:
    limit = getattr(monitor, "max_layers", None)
    assert limit is None or len(selected) <= limit
    for n, m in selected.items():
        assert isinstance(m, (nn.Conv2d, *POOL_TYPES)) or len(zoo.shapes.get(n, ())) == 4, n


def _gradcam(zoo: ZooRun, selected: dict[str, nn.Module], monitor: Any) -> None:
    spatial = {n: s for n, s in zoo.shapes.items() if _spatial(s)}
    smallest = min(s[2] * s[3] for s in spatial.values())
    for n, m in selected.items():
        assert n in spatial, f"{n} has output {zoo.shapes.get(n)} (needs 4-D, spatial > 1)"
        assert spatial[n][2] * spatial[n][3] == smallest, f"{n} is not in the last stage"
        assert not (isinstance(m, nn.Conv2d) and m.out_channels == NUM_CLASSES), "logits conv"
        assert not n.startswith("net.classifier"), "a classifier-head module"


def _embedding(zoo: ZooRun, selected: dict[str, nn.Module], monitor: Any) -> None:
    # auto: the *input* of the head (the last Linear, or squeezenet's 1x1 logits conv)
    assert monitor.reads_input and len(selected) == 1
    heads = [n for n, m in named_layers(zoo.model).items() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert list(selected) == heads[-1:]


SENSIBLE: dict[str, Callable[[ZooRun, dict[str, nn.Module], Any], None]] = {
    "KernelMonitor": _kernel,
    "ActivationMonitor": _activation,
    "FeatureMapMonitor": _feature_maps,
    "GradCAMMonitor": _gradcam,
    "EmbeddingMonitor": _embedding,
}


def _summary(name: str, selected: dict[str, nn.Module], monitor: Any) -> str:
    if not selected:
        return "(model outputs)"
    names = [n.removeprefix("net.") for n in selected]
    if len(names) <= 3:
        return ", ".join(f"{n} ({type(selected['net.' + n]).__name__})" for n in names)
    kinds = sorted({type(m).__name__ for m in selected.values()})
    return f"{len(names)}: {names[0]} .. {names[-1]} ({'/'.join(kinds)})"


def test_zoo_torchvision_auto_table():
    """Print (``-s``) and optionally save what ``auto`` picked per architecture and monitor."""
    if not AUTO_TABLE:
        pytest.skip("run with the other zoo tests to fill the table")
    lines = [f"| arch | {' | '.join(ALL_MONITORS)} |", "|---" * (len(ALL_MONITORS) + 1) + "|"]
    for arch, picks in AUTO_TABLE.items():
        lines.append(f"| {arch} | " + " | ".join(picks.get(n, "") for n in ALL_MONITORS) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    if os.environ.get("CNNVIZ_ZOO_TABLE"):
        with open(os.environ["CNNVIZ_ZOO_TABLE"], "w") as file:
            file.write(table + "\n")
    assert set(AUTO_TABLE) == set(ARCHS)
