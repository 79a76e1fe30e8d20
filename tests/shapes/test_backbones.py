"""timm and torchvision classifiers (random weights, 64 x 64 images): every monitor (strict)
writes, feature maps only from layers with maps larger than 1 x 1, Grad-CAM at the last
block's output."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.target_layer import trace_calls
from tests.monitors import ALL_MONITORS
from tests.shapes import models
from tests.shapes.run import run_shape

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

# name: (constructor, the layer Grad-CAM's auto should pick: the last block's output)
BACKBONES = {
    "timm_resnet18": ("resnet18", "layer4.1.act2"),
    "timm_efficientnet_b0": ("efficientnet_b0", "bn2.act"),
    "timm_mobilenetv3_small_050": ("mobilenetv3_small_050", "blocks.5.0.bn1.act"),
    "timm_convnext_atto": ("convnext_atto", "stages.3.blocks.1"),
    "timm_regnetx_002": ("regnetx_002", "s4.b7.act3"),
    "tv_resnet18": ("resnet18", "layer4.1.relu"),
    "tv_mobilenet_v3_small": ("mobilenet_v3_small", "features.12.2"),
}


def make(name: str) -> torch.nn.Module:
    arch = BACKBONES[name][0]
    if name.startswith("timm_"):
        return timm.create_model(arch, pretrained=False, num_classes=models.NUM_CLASSES)
    return getattr(torchvision.models, arch)(weights=None, num_classes=models.NUM_CLASSES)


@pytest.fixture(scope="module", params=list(BACKBONES))
def backbone_run(request, tmp_path_factory):
    torch.manual_seed(0)
    model = models.backbone(lambda: make(request.param))
    return request.param, run_shape(tmp_path_factory.mktemp(request.param), model)


def test_backbones_every_monitor_writes(backbone_run):
    name, run = backbone_run
    failed = [w for w in run.warnings if " failed" in w or "steps aside" in w]
    assert not failed, failed
    for monitor in ALL_MONITORS:
        assert run.written(monitor), (name, monitor)
        assert not run.monitors[monitor].disabled


def test_backbones_feature_maps_larger_than_one_position(backbone_run):
    name, run = backbone_run
    monitor = run.monitors["FeatureMapMonitor"]
    # the same architecture, unwrapped from the LightningModule: the same output shapes
    net = [n.removeprefix("net.") for n in monitor.selected]
    model = make(name).eval()
    layers = named_layers(model)
    calls, _ = trace_calls(model, {n: layers[n] for n in net}, torch.zeros(1, 3, 64, 64))
    shapes = {c.name: c.shape for c in calls}
    assert shapes and all(math.prod(shapes[n][2:]) > 1 for n in net), shapes
    drawn = [t for t in run.tags["images"] if t.startswith("feature_maps/")]
    assert {f"feature_maps/{n}" for n in monitor.sites()} <= set(drawn)


def test_backbones_gradcam_auto_picks_the_last_block(backbone_run):
    name, run = backbone_run
    assert list(run.monitors["GradCAMMonitor"].selected) == ["net." + BACKBONES[name][1]]
    assert {"gradcam/train", "gradcam/val"} <= run.tags["images"]
