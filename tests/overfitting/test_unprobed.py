"""A model whose ``forward`` cannot take the probe: the logged curves are still read."""

import logging

import pytest
import torch.nn.functional as F

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from tests.overfitting.test_overfitting import Scripted, fit
from tests.tb import events, texts


class TwoInputs(Scripted):
    """``forward(x, scale)``: a second required input, which no probe pass can give."""

    def forward(self, x, scale):
        return self.fc(x.flatten(1)) * scale

    def training_step(self, batch, batch_idx):
        x, y = batch
        e = self.current_epoch
        self.log("train/loss", self.train_series[e], on_step=True, on_epoch=True)
        self.log("train/acc", 0.8 + 0.03 * e, on_step=True, on_epoch=True)
        return F.cross_entropy(self(x, 1.0), y)


def test_unprobed_model_is_still_told_overfitting_from_its_logged_curves(tmp_path, caplog):
    # setups hunt 28: the monitor stepped aside wholesale, though the val loss it reads
    # needs no probe pass
    monitor = OverfittingMonitor(num_samples=4)
    with caplog.at_level(logging.INFO):
        trainer, said = fit(tmp_path, monitor, model=TwoInputs())
    assert not monitor.disabled and monitor.events == 7
    reason = "the model's `forward` needs `scale` besides the images"
    told = [m for m in said if m.startswith("OverfittingMonitor")]
    assert told == [m for m in told if "checks that read the model's scores do not run" in m]
    assert len(told) == 1 and reason in told[0] and "steps aside" not in told[0]
    (finding,) = findings_of(trainer)
    assert (finding.kind, finding.step, finding.severity) == ("overfitting", 14, "problem")
    assert finding.figures["val_loss"] == pytest.approx(1.0)
    (text,) = texts(events(tmp_path / "tb"), "overfitting/diagnosis")
    assert text.startswith("**Overfitting since epoch 3 (step 8): val loss 1 is 25% above")
    checks = checks_of(trainer)
    assert checks[("OverfittingMonitor", "overfitting")].ran
    assert checks[("OverfittingMonitor", "memorisation")].ran  # from the logged accuracies
    assert checks[("OverfittingMonitor", "not learning")].ran  # from the loss it returns
    for check in ("class imbalance", "loss fed probabilities"):
        assert not checks[("OverfittingMonitor", check)].ran
        assert reason in checks[("OverfittingMonitor", check)].why, check
    assert "OverfittingMonitor (stepped aside" not in caplog.text
