from lightning_cnnviz.core.findings import checks_of
from tests.monitors import fit, make_monitor


def test_barebones_says_that_logging_is_off_not_to_log(tmp_path):
    # held out: Trainer(barebones=True) got "Log them with `self.log(...)`", which it disables
    monitor = make_monitor("OverfittingMonitor")
    trainer, _, messages = fit(tmp_path, [monitor], logger=False, barebones=True)
    said = [m for m in messages if m.startswith("OverfittingMonitor: cannot find")]
    assert len(said) == 1 and "`Trainer(barebones=True)` turns `self.log` off" in said[0]
    assert "Log them with" not in said[0]
    check = checks_of(trainer)[("OverfittingMonitor", "overfitting")]
    assert not check.ran and check.why == "`Trainer(barebones=True)` turns `self.log` off"
