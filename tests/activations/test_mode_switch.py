import math

import torch

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


def test_mode_switch_before_a_spike_the_accuracy_survived_is_named_not_a_harder_target():
    # held-out hunt 121: timm resnet10t, BatchNorm frozen at step 72, the loss 0.05 -> 1.97
    # at 75, val 92% -> 82%: told "the training target got harder ... the model did not get
    # worse" (the probe's accuracy 94% -> 88%), and the switch "no harm so far" at step 80
    def run(frozen):
        diagnosis, told = TrainingDiagnosis(0.9, 8, 0.01), {}
        losses = [0.05 + 2.25 * math.exp(-s / 6) + 0.01 * (s % 3) for s in range(75)]
        losses += [1.97, 1.5, 1.2] * 9
        for step, value in enumerate(losses):
            diagnosis.loss.add(step, torch.tensor(value))
            if step + 1 in (20, 40, 60, 80, 100):
                modes = (["bn"] if frozen and step + 1 > 72 else [], [])
                acc = 0.875 if step + 1 == 100 else 0.9375
                verdicts = diagnosis.review(step + 1, 0, {}, {}, [], list, chance=(10, 2.31),
                                            probe_acc=acc, probe_loss=0.3, modes=modes)  # fmt: skip
                told[step + 1] = [(v.kind, v.severity, v.message) for v in verdicts]
        return told

    told = run(frozen=True)
    ((kind, _, text),) = told[80]
    assert kind == "eval_mode_switch" and "the loss has spiked since" in text
    assert [(k, s) for k, s, _ in told[100]] == [("divergence", "problem")]
    assert (
        "BatchNorm layers `bn` were switched to eval mode between steps 60 and 80"
        in (told[100][0][2])
    )
    # the same spike with no switch: the accuracy held, a harder target (a note)
    told = run(frozen=False)
    assert [(k, s) for k, s, _ in told[100]] == [("divergence", "note")]
    assert "the training target got harder" in told[100][0][2]
