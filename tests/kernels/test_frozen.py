"""Frozen layers: kernels as initialised told apart from trained ones, on real model zoos."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from lightning_cnnviz.kernels.frozen import neighbour_correlation, untrained_look


def _convs(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: torchvision.models.resnet18(weights=None),
        lambda: torchvision.models.mobilenet_v3_small(weights=None),
        lambda: timm.create_model("resnet10t", pretrained=False),
        lambda: timm.create_model("convnext_atto", pretrained=False),
        lambda: nn.Sequential(nn.Conv1d(4, 32, 5), nn.Conv3d(32, 32, 3)),
    ],
)
def test_frozen_model_zoo_initialisations_look_untrained(make):
    torch.manual_seed(0)
    r = untrained_look(_convs(make()))
    assert r is not None and abs(r) < 0.05


def test_frozen_trained_kernels_do_not_look_untrained():
    # a 3x3 kernel trained on digits is smooth: neighbouring taps alike, plus noise
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-1, 1, 3)
    plane = ramp[:, None] + ramp[None, :]  # a smooth gradient across the kernel
    smooth = torch.randn(64, 16, 1, 1, generator=g) * plane
    weight = smooth + 0.3 * torch.randn(64, 16, 3, 3, generator=g)
    r, pairs = neighbour_correlation(weight)
    assert r > 0.3 and pairs == 64 * 16 * 12
    assert untrained_look([weight]) is None
    assert untrained_look([torch.randn(4, 2, 3, 3)]) is None  # 96 pairs: too few to tell
    assert neighbour_correlation(torch.randn(8, 8, 1, 1)) is None  # 1x1: no neighbours
