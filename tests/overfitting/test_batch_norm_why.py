from torch import nn

from lightning_cnnviz.core.findings import checks_of
from tests.monitors import FrozenNorms, TinyCNN, fit, make_monitor


def test_batch_norm_why_frozen_and_untracked_layers(tmp_path):
    # held out: `track_running_stats=False` and BatchNorm kept in eval mode were both
    # said as "no BatchNorm layer in training mode"
    untracked = TinyCNN()
    untracked.bn1 = nn.BatchNorm2d(8, track_running_stats=False)
    untracked.bn2 = nn.BatchNorm2d(8, track_running_stats=False)
    said = {}
    for name, model in (("frozen", FrozenNorms()), ("untracked", untracked)):
        trainer, _, _ = fit(tmp_path / name, [make_monitor("OverfittingMonitor")], model=model)
        check = checks_of(trainer)[("OverfittingMonitor", "BatchNorm train/eval")]
        said[name] = (check.ran, check.why)
    assert said["frozen"] == (
        False,
        "its BatchNorm layers are in eval mode during training: their statistics never move",
    )
    assert said["untracked"] == (
        False,
        "its BatchNorm layers keep no running statistics (`track_running_stats=False`)",
    )
