from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
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


def test_mode_switch_is_kept_in_checkpoints_and_ends_when_the_layers_train_again():
    diagnosis = TrainingDiagnosis(0.9, 8, 0.01)
    for step, modes in ((4, ([], [])), (8, ([], [])), (12, (["bn"], ["drop"]))):
        diagnosis._note_modes(step, modes)
        diagnosis.last_step = step
    assert diagnosis._switch_before(10) == (8, 12, ["bn"])
    assert diagnosis._switch_before(7) is None  # a spike before it: not its cause
    resumed = TrainingDiagnosis(0.9, 8, 0.01)
    resumed.load_state_dict(diagnosis.state_dict())
    assert resumed.mode_switch == (8, 12, ["bn"]) and resumed.eval_layers == ["bn", "drop"]
    resumed._note_modes(16, ([], []))  # back in training mode: a spike after it is not its
    assert resumed._switch_before(14) == (8, 12, ["bn"]) and resumed._switch_before(20) is None
