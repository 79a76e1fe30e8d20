import torch

from lightning_cnnviz.core.findings import checks_of, findings_of
from tests.monitors import TinyCNN, fit, make_monitor


class AdamCNN(TinyCNN):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)  # eps=1e-8: 0 in float16


def test_half_precision_divergence_puts_float32_weights_first(tmp_path):
    # held out: precision="16-true" with Adam went NaN at step 2 (also without monitors),
    # told with "lower the learning rate (10x)" first and 16-bit precision last
    monitors = [
        make_monitor("ActivationMonitor", every_n_steps=2),
        make_monitor("OverfittingMonitor"),
    ]
    trainer, _, _ = fit(tmp_path, monitors, model=AdamCNN(), precision="16-true", max_steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "divergence"]
    assert found.severity == "problem"
    assert 'Try: float32 weights first (`precision="16-mixed"`' in found.message
    assert "`eps=1e-08` rounds to 0 there" in found.message
    # the val loss was logged, as NaN: the summary says that, not "none logged"
    check = checks_of(trainer)[("OverfittingMonitor", "overfitting")]
    assert (
        not check.ran
        and check.why == "the validation loss `val/loss` was NaN or Inf at every validation"
    )
