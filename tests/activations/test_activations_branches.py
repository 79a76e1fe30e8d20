"""A layer on a branch `forward` chooses by its input: recorded where batches take it."""

from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.activations.callback import ActivationMonitor
from tests.feature_maps.test_feature_maps_branches import bright_twos
from tests.monitors import TinyCNN, fit
from tests.tb import events


class Branch(TinyCNN):
    """``conv2b`` and ``relu2b`` in place of ``conv2`` and ``relu2`` on bright batches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2b, self.relu2b = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()

    def forward(self, x):
        bright = bool(x.amin() > 0.5)  # chosen by the batch
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2b(self.conv2b(x)) if bright else self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.pool2(x).flatten(1))


def test_activations_monitor_a_branch_the_first_probe_image_does_not_take_is_recorded(tmp_path):
    # the call sites were traced on the first probe image alone: `relu2b`, taken by the
    # bright training batch and by the probe's third image, was said "not called by the
    # model's forward() in eval mode, e.g. a GAN's generator" and never recorded
    monitor = ActivationMonitor(layers=["relu2", "relu2b"], every_n_steps=2, strict=True)
    loaders = tuple(DataLoader(bright_twos(32, s), batch_size=8) for s in (1, 2))
    _, _, messages = fit(tmp_path, [monitor], model=Branch(), data=loaders)
    assert not monitor.disabled and monitor.events == 2
    assert not [m for m in messages if "not called" in m]
    acc = events(tmp_path)
    # the bright batch is an epoch's first: in step 2's window, not in step 4's
    for layer, steps in (("relu2", [2, 4]), ("relu2b", [2])):
        written = acc.Scalars(f"activations/{layer}/zero_fraction")
        assert [s.step for s in written] == steps
        assert all(0.0 < s.value < 1.0 for s in written), layer
