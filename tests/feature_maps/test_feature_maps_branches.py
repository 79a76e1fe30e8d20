"""A conv on a branch `forward` chooses by its input: drawn where a probe pass takes it."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.feature_maps.callback import FeatureMapMonitor
from tests.monitors import TinyCNN, digits, fit
from tests.tb import events, image_tags


def bright_twos(n: int, seed: int) -> TensorDataset:
    """Quadrant digits, those of class 2 first (the first batch's own) and 1.0 brighter.

    The probe's images, class by class, start with a class 0 one; its third is of class 2.
    """
    x, y = digits(n, seed=seed).tensors
    order = torch.argsort((y != 2).int(), stable=True)
    x, y = x[order].clone(), y[order]
    x[y == 2] += 1.0
    return TensorDataset(x, y)


class Branch(TinyCNN):
    """``conv2b`` in place of ``conv2`` on a batch of bright images only: trained on those."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2b = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        conv = self.conv2b if x.amin() > 0.5 else self.conv2  # chosen by the batch
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(conv(x))))
        return self.fc(x.flatten(1))


def test_feature_maps_monitor_a_branch_the_probe_batch_does_not_take_is_said_not_dropped(
    tmp_path,
):
    # setups hunt 74: the probe batch takes `conv2`; `conv2b` was told "neither shaped like
    # the input nor a token grid" (called by the one image the call sites were found on, not
    # by the batch) or "not called", and the monitor stepped aside for the run
    both = FeatureMapMonitor(layers=["conv2", "conv2b"], every_n_steps=2, strict=True)
    alone = FeatureMapMonitor(layers=["conv2b"], every_n_steps=2, tag_prefix="b", strict=True)
    loaders = tuple(DataLoader(bright_twos(32, s), batch_size=8) for s in (1, 2))
    model = Branch()
    before = model.conv2b.weight.detach().clone()
    _, _, messages = fit(tmp_path, [both, alone], model=model, data=loaders)
    assert not torch.equal(model.conv2b.weight, before)  # trained on the bright batch
    assert not both.disabled and not alone.disabled and both.events == alone.events == 2
    assert not [m for m in messages if "neither shaped" in m or "not called" in m]
    said = [m for m in messages if "did not take `conv2b`" in m]
    assert [m.split(":")[0] for m in said] == [
        "FeatureMapMonitor",
        "FeatureMapMonitor (tag_prefix 'b/')",
    ]
    acc = events(tmp_path)
    assert [i.step for i in acc.Images("feature_maps/conv2")] == [2, 4]
    assert not [t for t in image_tags(acc) if "conv2b" in t]  # not drawn where not called
