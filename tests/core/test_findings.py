"""The run's record of findings: a root cause named by the problems told after it."""

from lightning_cnnviz.core.findings import Finding, findings_of, report


class Run:
    """Anything can hold the record (the trainer, in a run)."""


def test_findings_of_a_lightning_module_are_its_trainers():
    # setups hunt 21: findings_of(model) returned [] (and set an attribute on the model)
    import lightning as L
    import pytest

    from lightning_cnnviz.core.findings import checks_of, record_check

    trainer, module = L.Trainer(logger=False, enable_checkpointing=False), L.LightningModule()
    with pytest.raises(TypeError, match="is in no Trainer"):
        findings_of(module)
    module.trainer = trainer
    report(trainer, Finding("x", "dead_units", 3, 0, "relu: 40% dead"))
    record_check(trainer, "X", "dead units", True)
    assert findings_of(module) is findings_of(trainer) and len(findings_of(module)) == 1
    assert list(checks_of(module)) == [("X", "dead units")]
    assert not hasattr(module, "_cnnviz_findings")
    with pytest.raises(TypeError, match="got None"):
        findings_of(None)
