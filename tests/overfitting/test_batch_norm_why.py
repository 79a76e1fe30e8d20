import lightning as L
import pytest
from torch import nn

from lightning_cnnviz.core.findings import checks_of, findings_of
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


class NaNStatisticsAt(L.Callback):
    """``value`` written into the first BatchNorm's running variance after ``step`` steps."""

    def __init__(self, step, value=float("nan")):
        self.step, self.value = step, value

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            pl_module.bn1.running_var[0] = self.value


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_batch_norm_why_running_statistics_holding_nan_are_told_at_once(tmp_path, value):
    # hunt 36: NaN in a `running_var` from step 96: val NaN from the next validation,
    # told two validations on as a mismatch, the NaN never named
    monitor = make_monitor("OverfittingMonitor")
    trainer, _, said = fit(tmp_path, [monitor, NaNStatisticsAt(2, value)], max_epochs=2)
    (found,) = [f for f in findings_of(trainer) if f.kind == "bn_mismatch"]
    assert found.severity == "problem" and found.figures["nonfinite"] == ["bn1"]
    assert found.message.startswith("BatchNorm running statistics hold NaN/Inf since")
    assert any(m.startswith("BatchNorm running statistics hold NaN/Inf") for m in said)
    # hunt 93: an infinite variance divides its channel to 0, the outputs stay finite; it
    # was told "every validation output is NaN" at a val loss of 4.34
    nan = value != value
    assert ("every validation output is NaN" in found.message) is nan
    assert ("outputs the same for every image" in found.message) is not nan


class UntrackOrReset(L.Callback):
    """Turns BatchNorm's `track_running_stats` off after the first step (``"untrack"``), or
    resets the running statistics before each validation (``"reset"``)."""

    def __init__(self, how):
        self.how = how

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 1 and self.how == "untrack":
            for m in (pl_module.bn1, pl_module.bn2):
                m.track_running_stats = False  # "freeze BN": the buffers stay, eval reads them

    def on_validation_start(self, trainer, pl_module):
        if self.how == "reset":
            for m in (pl_module.bn1, pl_module.bn2):
                m.reset_running_stats()


def test_batch_norm_why_statistics_frozen_or_reset_mid_run_are_still_read(tmp_path):
    # hunt 85: the flag turned off mid-run left the check blind (eval 12-44% against 77-96%
    # on batch statistics, told as a gap, overfitting and rare classes); statistics reset
    # before each validation read as an early lag, a note until half the run
    for how in ("untrack", "reset"):
        monitor = make_monitor("OverfittingMonitor")
        trainer, _, _ = fit(tmp_path / how, [monitor, UntrackOrReset(how)], max_epochs=3)
        assert checks_of(trainer)[("OverfittingMonitor", "BatchNorm train/eval")].ran
        history = monitor.detector.history
        assert history[0].probe_acc_bn is not None  # batch statistics read
        frozen = how == "untrack"
        assert all((e.bn_momentum == 0.0) == frozen for e in history)  # a lag waits never close
        assert all(e.bn_initial == (() if frozen else ("bn1", "bn2")) for e in history)


def test_batch_norm_why_instance_norm_keeping_running_statistics_is_checked(tmp_path):
    # setups hunt 78: `InstanceNorm2d(track_running_stats=True)`, 28% in eval mode against
    # 76% in training mode, was told "an auxiliary head ... never trained" and the check
    # said "no BatchNorm layer"
    model = TinyCNN()
    model.bn1 = nn.InstanceNorm2d(8, track_running_stats=True)
    model.bn2 = nn.InstanceNorm2d(8, track_running_stats=True)
    monitor = make_monitor("OverfittingMonitor")
    trainer, _, _ = fit(tmp_path, [monitor], model=model)
    assert checks_of(trainer)[("OverfittingMonitor", "BatchNorm train/eval")].ran
    assert monitor.detector.history[0].probe_acc_bn is not None
