import torch

from lightning_cnnviz.core.findings import findings_of
from tests.monitors import FrozenNorms, fit, make_monitor


def test_frozen_norms_at_their_initial_statistics_are_a_problem(tmp_path):
    # held out (hunt 14): BatchNorm kept in eval mode while training from scratch, 40-49%
    # val against 93-95%: "no problems found"
    monitor = make_monitor("ActivationMonitor", every_n_steps=2)
    trainer, _, said = fit(tmp_path / "init", [monitor], model=FrozenNorms())
    assert [m for m in said if m.startswith("BatchNorm frozen at step 2 (epoch 0)")]
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_batch_norm"]
    assert found.severity == "problem" and found.figures["layers"] == 2
    assert "`bn1`, `bn2` are in eval mode while the model trains" in found.message
    # pretrained statistics frozen on purpose: not at their initial values, never named
    model = FrozenNorms()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.fill_(0.3)
            bn.running_var.fill_(2.0)
    monitor = make_monitor("ActivationMonitor", every_n_steps=2)
    trainer, _, _ = fit(tmp_path / "pretrained", [monitor], model=model)
    assert not [f for f in findings_of(trainer) if f.kind == "frozen_batch_norm"]
