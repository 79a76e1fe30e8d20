"""The layer a network takes its images through first."""

import torch
from torch import nn

from lightning_cnnviz.core.input_layer import first_layer


def test_first_layer_skips_training_only_layers_and_other_channels():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    assert first_layer(net, 3) == (net[0], "")
    layer, why = first_layer(net, 1)
    assert layer is None and "takes 3 channels, not 1" in why
    layer, why = first_layer(nn.Sequential(nn.Dropout2d(0.2), *net), 3)
    assert layer is None and "`Dropout2d`" in why
    assert first_layer(nn.Sequential(nn.Conv3d(1, 2, 3)), 1)[1] == ""
    normed = nn.Sequential(nn.BatchNorm2d(3), *net)  # its input is what the steps give
    assert first_layer(normed, 3) == (normed[0], "")
    # setups hunt 35: a learnt `Linear` stem's output changes as it learns: not the steps'
    stem = nn.Sequential(nn.Flatten(), nn.Linear(12, 12), nn.Unflatten(1, (3, 2, 2)), *net)
    layer, why = first_layer(stem, 3)
    assert layer is None and why == "a `Linear` with weights comes before its first convolution"
    scaled = nn.Sequential(nn.Sequential(*net))  # a container's own learnt scale: no layer
    scaled[0].register_parameter("gain", nn.Parameter(torch.ones(1)))
    assert first_layer(scaled, 3) == (net[0], "")
