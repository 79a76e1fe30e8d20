"""Layers found by the names ``named_modules`` gives them: weight averages kept on a model."""

import timm.utils
from torch import nn

from lightning_cnnviz.core.layer_calls import apart_from_training, in_weight_average


class Shadowed(nn.Module):
    """A model holding a timm EMA copy registered under a name its class also holds (None)."""

    emav3 = None

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
        self.emav3 = timm.utils.ModelEmaV3(self.net, decay=0.99)


def test_layer_calls_a_weight_average_hidden_by_a_class_attribute_is_still_found():
    # hunt 76: `self.emav3` read the class's None, the copy's layers were no weight average
    # and were told "frozen layers ... left out of the optimiser's parameter groups"
    model = Shadowed()
    assert model.emav3 is None and "emav3.module.0" in dict(model.named_modules())
    assert in_weight_average(model, "emav3.module.0") and apart_from_training(
        model, "emav3.module.0"
    )
    assert not in_weight_average(model, "net.0") and not in_weight_average(model, "nowhere.0")
