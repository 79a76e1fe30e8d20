"""Validation run in training mode: told once, and the probe read in eval mode."""

import torch
import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.overfitting.val_mode import REPEAT_SPREAD, deliberate, train_mode_layers
from tests.monitors import TinyCNN, fit
from tests.tb import events, texts


class TrainInValidation(TinyCNN):
    """``self.train()`` left in ``validation_step``: BatchNorm on val batch statistics."""

    def validation_step(self, batch, batch_idx):
        self.train()
        super().validation_step(batch, batch_idx)


class DropoutNet(TinyCNN):
    """TinyCNN with dropout before its head; ``mc`` switches the dropout alone on at val."""

    def __init__(self, mc: bool = False) -> None:
        super().__init__()
        self.drop, self.mc = nn.Dropout(0.5), mc

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.drop(x.flatten(1)))

    def validation_step(self, batch, batch_idx):
        if self.mc:
            self.drop.train()
        super().validation_step(batch, batch_idx)


class FunctionalDropout(DropoutNet):
    """``F.dropout(x, 0.5)`` in ``forward``: its ``training=True`` default in eval mode too."""

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(F.dropout(x.flatten(1), 0.5))


def run(tmp_path, model):
    return fit(tmp_path, [OverfittingMonitor()], model=model, max_epochs=2,
               limit_train_batches=4, limit_val_batches=2)  # fmt: skip


def told(trainer):
    return [f for f in findings_of(trainer) if f.kind == "train_mode_in_validation"]


def test_val_mode_train_call_in_validation_step_is_a_problem_told_once(tmp_path):
    trainer, _, said = run(tmp_path, TrainInValidation())
    (found,) = told(trainer)
    assert (found.severity, found.step, found.figures) == ("problem", 4, {"layers": 2.0})
    assert "`bn1` (BatchNorm2d), `bn2` (BatchNorm2d) were in training mode" in found.message
    assert "BatchNorm normalises with each val batch's statistics" in found.message
    assert len([m for m in said if "Validation runs the model in training mode" in m]) == 1
    assert any(found.message in t for t in texts(events(tmp_path), "overfitting/diagnosis"))
    # the loop's train-mode logits are not taken for the eval-mode probe
    monitor = trainer.callbacks[0]
    assert not monitor.val_from_loop
    assert not [f for f in findings_of(trainer) if f.kind == "bn_mismatch"]


def test_val_mode_dropout_alone_switched_on_is_a_note(tmp_path):
    trainer, _, said = run(tmp_path, DropoutNet(mc=True))
    (found,) = told(trainer)
    assert found.severity == "note" and "Monte Carlo dropout?" in found.message
    assert not [m for m in said if "Dropout runs at validation" in m]


def test_val_mode_eval_mode_validation_says_nothing(tmp_path):
    trainer, _, _ = run(tmp_path, DropoutNet())
    assert told(trainer) == []
    assert trainer.callbacks[0].val_from_loop


def test_val_mode_layers_and_the_whole_model_switched():
    net = DropoutNet().eval()
    assert train_mode_layers(net) == []
    net.drop.train()
    assert train_mode_layers(net) == [("drop", "Dropout")]
    assert deliberate(net, [("drop", "Dropout")])
    net.train()
    layers = train_mode_layers(net)
    assert [n for n, _ in layers] == ["bn1", "bn2", "drop"] and not deliberate(net, layers)


def test_val_mode_a_model_random_in_eval_mode_is_a_problem_told_once(tmp_path):
    # held out (hunt 15): `F.dropout(x, 0.5)` in forward: 93.2-93.9% logged val accuracy
    # against 95.9-96.1% with the dropout off, and nothing said
    trainer, _, said = run(tmp_path, FunctionalDropout())
    (found,) = told(trainer)
    assert found.severity == "problem" and found.figures["spread"] > 0.01
    assert found.message.startswith("The model is random in eval mode (seen at step 4)")
    assert "`F.dropout(x, p)` (its `training=True` default)" in found.message
    assert len([m for m in said if "random in eval mode" in m]) == 1


class FractionalPools(DropoutNet):
    """Fractional max-pooling: its pooling regions drawn at every call, eval mode too."""

    def __init__(self) -> None:
        super().__init__()
        self.pool1 = nn.FractionalMaxPool2d(2, output_size=9)  # 16 -> 9: regions drawn


def test_val_mode_fractional_pooling_is_named_as_the_cause_in_a_note(tmp_path):
    # held out (hunt 26): a net with FractionalMaxPool2d was told "random in eval mode"
    # with functional dropout and noise in `forward` as causes, which it had none of
    trainer, _, said = run(tmp_path, FractionalPools())
    (found,) = told(trainer)
    assert found.severity == "note" and found.figures["spread"] > REPEAT_SPREAD
    assert "`pool1` (FractionalMaxPool2d) draws its pooling regions anew" in found.message
    assert "F.dropout" not in found.message
    assert not [m for m in said if "random in eval mode" in m]  # a note: no warning


class Observed(TinyCNN):
    """Quantization-aware training's observers: they move on every forward, eval mode too."""

    def __init__(self) -> None:
        super().__init__()
        q = torch.ao.quantization  # 4 bits, statistics half renewed by each pass
        observer = q.MovingAverageMinMaxObserver.with_args(averaging_constant=0.5)
        self.quant = q.FakeQuantize(observer, quant_min=0, quant_max=15)

    def forward(self, x):
        return super().forward(self.quant(x))


def test_val_mode_observers_moving_between_the_two_passes_are_not_randomness(tmp_path):
    # setups hunt 19: a QAT model (fake-quant observers updated by the first pass) was told
    # "random in eval mode ... logits 3% apart ... something in forward draws random numbers"
    trainer, _, said = run(tmp_path, Observed())
    assert told(trainer) == [] and not [m for m in said if "random in eval mode" in m]


def test_val_mode_repeat_check_leaves_the_random_stream_as_it_was(tmp_path):
    # the same functional-dropout model trained with and without the monitor: bit-identical
    weights = []
    for callbacks in ([], [OverfittingMonitor()]):
        torch.manual_seed(0)
        model = FunctionalDropout()
        fit(tmp_path / str(len(callbacks)), callbacks, model=model, max_epochs=1,
            limit_train_batches=4, limit_val_batches=2)  # fmt: skip
        weights.append(model.fc.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
