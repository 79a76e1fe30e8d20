from lightning_cnnviz.activations.divergence_causes import divergence_cause
from lightning_cnnviz.core.findings import findings_of
from tests.monitors import TinyCNN, fit, make_monitor


class EvalFrom(TinyCNN):
    """TinyCNN that puts itself in eval mode in ``training_step`` from step ``at`` on."""

    def __init__(self, at: int, lr: float = 0.05) -> None:
        super().__init__(lr=lr)
        self.at = at

    def training_step(self, batch, batch_idx):
        if self.global_step >= self.at:
            self.eval()  # held-out hunt 119: never `train()` again
        return super().training_step(batch, batch_idx)


def test_mode_switch_mid_run_is_told_with_its_layers_and_steps(tmp_path):
    # held-out hunt 119: BatchNorm switched to eval mode mid-run was never named
    monitor = make_monitor("ActivationMonitor", every_n_steps=4)
    trainer, _, _ = fit(tmp_path, [monitor], model=EvalFrom(10), max_epochs=5)
    (found,) = [f for f in findings_of(trainer) if f.kind == "eval_mode_switch"]
    assert found.severity == "note" and found.step == 12  # no harm here: a note, not a problem
    assert found.figures["since_step"] == 8 and found.figures["norm_layers"] == 2
    assert "BatchNorm `bn1`, `bn2`" in found.message and "training mode at step 8" in found.message


def test_mode_switch_is_named_as_the_cause_of_a_divergence():
    # held-out hunt 119: the loss stepped up at the switch, told "the training batches changing"
    cause = divergence_cause(
        None, None, stepped=(236, 0.38, 11.4, 2.4), switched=(200, 250, ["bn"])
    )
    assert cause.startswith("BatchNorm layers `bn` were switched to eval mode between steps 200")
    assert "`model.train()`" in cause and "training batches" not in cause


def test_mode_switch_not_told_on_a_run_in_training_mode(tmp_path):
    # nor on a fine-tune freezing trained BatchNorm at epoch 2 it tells more than a note
    monitor = make_monitor("ActivationMonitor", every_n_steps=4)
    trainer, _, _ = fit(tmp_path, [monitor], model=TinyCNN(), max_epochs=5)
    assert not [f for f in findings_of(trainer) if f.kind == "eval_mode_switch"]
