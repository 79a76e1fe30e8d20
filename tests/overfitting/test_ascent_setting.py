"""An optimiser climbing the loss: a rate a schedule turned negative, ``maximize=True``."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.activations.divergence_causes import divergence_cause
from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import lr_decay
from lightning_cnnviz.overfitting.evaluation import Evaluation
from tests.overfitting.runs import Net, fit_monitor, one_hot_set


class Climbing(Net):
    """A linear decay without a floor over ``total`` steps (``None``: none), or ``maximize``."""

    def __init__(self, total=None, maximize=False, negated=False) -> None:
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
        self.total, self.maximize, self.negated = total, maximize, negated

    def loss(self, logits, y):
        loss = super().loss(logits, y)
        return -loss if self.negated else loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, maximize=self.maximize)
        if self.total is None:
            return optimizer
        total = self.total
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / total)
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]


def _fit(tmp_path, model):
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    train = DataLoader(one_hot_set([16] * 4), batch_size=16, shuffle=True)
    return fit_monitor(tmp_path, model, train, val, epochs=4)  # 4 steps an epoch


def test_ascent_setting_a_rate_turned_negative_is_told_at_the_next_evaluation(tmp_path):
    # hunt 31: a LambdaLR(1 - s / total) stepped past its end went negative at step 96,
    # told as an early decay "-3x below its start", then "lower the learning rate"
    trainer, said = _fit(tmp_path, Climbing(total=6))
    (found,) = [f for f in findings_of(trainer) if f.kind == "gradient_ascent"]
    assert (found.severity, found.step) == ("problem", 8)  # negative from step 7
    assert found.figures["lr"] < 0 and found.figures["optimizer"] == "Adam"
    assert found.message.startswith("The learning rate of `Adam` is negative (-0.00")
    assert "it started at 0.01" in found.message
    assert len([m for m in said if m.startswith("The learning rate of `Adam` is negative")]) == 1
    assert not [f for f in findings_of(trainer) if f.kind == "lr_decayed_early"]


class HandDescent(torch.optim.Optimizer):
    """A hand-written descent ``p -= lr * grad`` (not one of torch's optimisers)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
        return loss


class SetByHand(Climbing):
    """The rate set negative by hand at step 5 (no schedule, no ``initial_lr``)."""

    def __init__(self, custom=False) -> None:
        super().__init__()
        self.custom = custom

    def configure_optimizers(self):
        if self.custom:
            return HandDescent(self.parameters(), lr=0.05)
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def on_train_batch_start(self, batch, batch_idx):
        if self.global_step == 5:
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = -0.05


def test_ascent_setting_a_rate_set_negative_by_hand_is_told_also_for_a_custom_optimiser(
    tmp_path,
):
    # hunt 34: a hand-written SGD's rate, and a torch SGD's set by hand, turned negative
    # mid-run were told as exploding gradients, or late as a divergence
    for custom, name in ((False, "SGD"), (True, "HandDescent")):
        trainer, _ = _fit(tmp_path / name, SetByHand(custom))
        (found,) = [f for f in findings_of(trainer) if f.kind == "gradient_ascent"]
        assert (found.severity, found.step, found.figures["optimizer"]) == ("problem", 8, name)
        assert f"The learning rate of `{name}` is negative (-0.05; it started at 0.05)" in (
            found.message
        )


def test_ascent_setting_quiet_for_maximize_and_a_usual_run(tmp_path):
    # hunt 33: `maximize=True` on a negated loss learnt (94-96%): the flag is no ascent
    trainer, _ = _fit(tmp_path / "max", Climbing(maximize=True, negated=True))
    assert not [f for f in findings_of(trainer) if f.kind == "gradient_ascent"]
    trainer, _ = _fit(tmp_path / "usual", Climbing(total=100))
    assert not [f for f in findings_of(trainer) if f.kind == "gradient_ascent"]


class NegatedLogged(Climbing):
    """``maximize=True`` on a returned -CE, logging +CE; its val loss drifts up each epoch."""

    def __init__(self) -> None:
        super().__init__(maximize=True)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return -loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y) * (1 + 0.5 * self.current_epoch)
        self.log("val/loss", loss, on_epoch=True)


def test_ascent_setting_maximize_reads_the_loss_returned_not_the_one_logged(tmp_path):
    # hunt 42: `Adam(maximize=True)` on a returned -CE (a descent), +CE logged, told
    # "the training loss is positive (0.158): every update climbs the loss" on a val loss
    # 0.218 -> 0.245
    trainer, _ = _fit(tmp_path, NegatedLogged())
    assert not [f for f in findings_of(trainer) if f.kind == "gradient_ascent"]
    history = [e.val_loss for e in trainer.callbacks[0].detector.history]
    assert history[-1] > 1.1 * min(history)  # validation got worse: only the sign tells


def test_ascent_setting_a_negative_rate_is_no_decay_and_the_divergence_names_it():
    negative = Evaluation(step=10, epoch=1, lr=-1e-3, lr_initial=1e-2)
    assert not lr_decay.cut(negative) and lr_decay.cut(Evaluation(10, 1, lr=1e-5, lr_initial=1e-2))
    text = divergence_cause(None, (1e-2, -1e-3))
    assert text.startswith("The learning rate is negative (-0.001; 0.01 at the first log)")
    assert "lower the learning rate" not in text


def test_ascent_setting_a_tensor_rate_and_a_warm_up_from_zero_are_read():
    # hunt 35: `Adam(lr=torch.tensor(...))` turned negative was read as no rate, and a
    # warm-up from 0 made the rate read at the start 0, never "started positive"
    from lightning_cnnviz.overfitting.ascent_setting import ascent_checks, group_rates, highest

    w = [torch.zeros(1, requires_grad=True)]
    adam = torch.optim.Adam(w, lr=torch.tensor(0.01))
    started = group_rates([adam])
    adam.param_groups[0]["lr"] = torch.tensor(-0.002)
    ((text, figures),) = ascent_checks([adam], started)
    assert figures["lr"] == pytest.approx(-0.002) and "it started at 0.01" in text
    sgd = torch.optim.SGD(w, lr=0.0)  # a warm-up from 0, read when training started
    started = group_rates([sgd])
    sgd.param_groups[0]["lr"] = 0.05  # seen at an evaluation
    started = highest(started, group_rates([sgd]))
    sgd.param_groups[0]["lr"] = -0.01
    assert len(ascent_checks([sgd], highest(started, group_rates([sgd])))) == 1


def test_ascent_setting_maximize_on_a_positive_loss_is_told_where_validation_got_worse(tmp_path):
    # hunt 36: `maximize=True` on the head's group only: val 53% -> 25%, told as dead
    # units "lower the learning rate"
    trainer, said = _fit(tmp_path, Climbing(maximize=True))
    (found,) = [f for f in findings_of(trainer) if f.kind == "gradient_ascent"]
    assert found.severity == "problem" and found.figures["optimizer"] == "Adam"
    assert found.figures["val_loss"] > found.figures["val_loss_best"]
    assert found.message.startswith("`Adam` is set to `maximize=True` on the model's layers")
    assert len([m for m in said if m.startswith("`Adam` is set to `maximize=True`")]) == 1
