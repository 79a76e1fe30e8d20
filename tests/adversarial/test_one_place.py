"""AdversarialMonitor with a named Grad-CAM layer whose map has one position (setups hunt 82)."""

from __future__ import annotations

from torch import nn

from lightning_cnnviz.adversarial.callback import AdversarialMonitor
from tests.gradcam.test_one_place import Net, _fit
from tests.tb import image_tags


def _one_by_one():
    return [nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 8),
            nn.ReLU()]  # fmt: skip


def test_adversarial_one_position_cam_layer_keeps_the_scalars(tmp_path):
    monitor = AdversarialMonitor(cam_layer="net.4", every_n_steps=2)
    _, said, acc = _fit(tmp_path, Net(_one_by_one, 8), (1, 16, 16), monitor)
    (told,) = [m for m in said if "the Grad-CAM layer `net.4` gives no CAM: its output has "
                                  "one position (1x1)" in m]  # fmt: skip
    # the remedy names no argument the monitor lacks (its layer is `cam_layer`)
    assert told.endswith("or leave the layer setting at `'auto'` to pick one")
    assert not [m for m in said if "steps aside" in m or "failed" in m]
    assert "adversarial/examples" not in image_tags(acc)  # no image of one-colour CAMs
    assert [e.step for e in acc.Scalars("adversarial/accuracy_attacked")] == [2, 4]
