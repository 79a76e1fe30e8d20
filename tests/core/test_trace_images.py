"""Set-up passes on as many probe images as the model takes: a BatchNorm without statistics."""

from torch import nn

from lightning_cnnviz.presets import callbacks
from tests.monitors import TinyCNN, assert_every_monitor_wrote, fit


class BatchOnlyHead(TinyCNN):
    """``TinyCNN`` with a ``BatchNorm1d(track_running_stats=False)`` dense head."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(8 * 4 * 4, 16)
        self.norm = nn.BatchNorm1d(16, track_running_stats=False)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.norm(self.hidden(x.flatten(1))).relu())


def test_trace_images_a_head_without_running_statistics_leaves_every_monitor_working(tmp_path):
    # setups hunt 79: four monitors stepped aside for the run on "Expected more than 1 value
    # per channel": their set-up passes traced one image
    monitors = callbacks()
    trainer, _, messages = fit(tmp_path, monitors, model=BatchOnlyHead(), max_steps=8)
    assert not [m for m in messages if " failed and steps aside" in m]
    assert_every_monitor_wrote(trainer.logger.log_dir, monitors, messages)
