"""FeatureMapMonitor on a named layer whose maps have one position (setups hunt 82)."""

from __future__ import annotations

from torch import nn

from lightning_cnnviz.feature_maps.callback import FeatureMapMonitor
from tests.gradcam.test_one_place import Net, _fit
from tests.tb import image_tags


def _one_by_one():
    return [nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 8),
            nn.ReLU()]  # fmt: skip


def test_feature_maps_one_position_layer_drawn_and_said_once(tmp_path):
    monitor = FeatureMapMonitor(layers=["net.0", "net.3"], every_n_steps=2)
    _, said, acc = _fit(tmp_path, Net(_one_by_one, 8), (1, 16, 16), monitor)
    flat = [m for m in said if "one position" in m]
    assert flat == [
        "FeatureMapMonitor: the output of `net.3` has one position (1x1): each tile is one "
        "colour (the channel's value for that image), with no place to show; a layer with a "
        "larger output shows where"
    ]
    drawn = set(image_tags(acc))
    assert {"feature_maps/net.0", "feature_maps/net.3"} <= drawn  # still drawn, as asked
    assert len(acc.Images("feature_maps/net.3")) == 2


def test_feature_maps_maps_above_one_position_not_flagged(tmp_path):
    monitor = FeatureMapMonitor(layers=["net.0", "net.2"], every_n_steps=2)
    _, said, _ = _fit(tmp_path, Net(_one_by_one, 8), (1, 16, 16), monitor)
    assert not [m for m in said if "one position" in m]
