"""Frozen layers in short fits: random init, no gradient, rate 0, no optimiser, a detach."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.kernels.callback import KernelMonitor
from tests.kernels.kernel_nets import EdgeNet, WideNet, run


def test_kernels_frozen_at_random_initialisation_is_a_problem(tmp_path):
    # a backbone frozen without its pretrained weights (held out: 50% val vs 99% trained)
    model = WideNet()
    for conv in (model.conv1, model.conv2):
        conv.weight.requires_grad_(False)
    with pytest.warns(UserWarning, match="Their kernels look untrained"):
        _, trainer, _ = run(tmp_path / "random", KernelMonitor(every_n_steps=2), model, steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and abs(found.figures["neighbour_r"]) < 0.1
    assert "compute fixed random features" in found.message
    # the same layers holding smooth (trained-looking) kernels: frozen on purpose, a note
    model = WideNet()
    with torch.no_grad():
        for conv in (model.conv1, model.conv2):
            conv.weight.copy_(torch.arange(9.0).reshape(3, 3).expand_as(conv.weight) / 9)
            conv.weight.requires_grad_(False)
    _, trainer, _ = run(tmp_path / "smooth", KernelMonitor(every_n_steps=2), model, steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "note" and "neighbour_r" not in found.figures


def test_kernels_frozen_layers_are_a_note_naming_them_and_why(tmp_path):
    # a conv layer frozen by mistake: its weights never move while the rest trains
    model = EdgeNet(lr=0.05)
    model.conv1.weight.requires_grad_(False)
    _, trainer, acc = run(tmp_path / "frozen", KernelMonitor(every_n_steps=2), model, steps=8)
    assert [e.value for e in acc.Scalars("kernels/conv1/relative_change")] == [0.0, 0.0, 0.0]
    assert all(e.value > 0 for e in acc.Scalars("kernels/conv2/relative_change"))
    (note,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    # `requires_grad=False` is known: the first unchanged event (step 4) confirms it
    assert (note.severity, note.step, note.figures) == (
        "note",
        4,
        {"layers": 1, "watched": 2, "no_grad": 1, "names": ["conv1"]},
    )
    assert "1 of 2 watched layers have not changed at all since step 2: `conv1`" in note.message
    assert "`requires_grad=False`" in note.message
    # a learning rate of 0, every layer: said as that
    _, trainer, _ = run(tmp_path / "still", KernelMonitor(every_n_steps=2), EdgeNet(0.0), steps=8)
    (note,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert "2 of 2" in note.message and "`conv2`; their learning rate is 0." in note.message
    monitor = KernelMonitor(every_n_steps=2)
    _, trainer, _ = run(tmp_path / "trained", monitor, EdgeNet(0.05), steps=8)
    assert [f for f in findings_of(trainer) if f.kind == "frozen_layers"] == []


class AtStep(L.Callback):
    """Calls ``change(model)`` once, before the batch of optimizer step ``step``."""

    def __init__(self, step: int, change) -> None:
        self.step, self.change = step, change

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                self.change(pl_module)


def unfreeze(model):  # as `BackboneFinetuning` does at an epoch
    model.conv1.weight.requires_grad_(True)


def halve(model):  # a BatchNorm folded into a frozen conv
    model.conv1.weight.mul_(0.5)


def test_kernels_frozen_layers_changing_again_become_a_note(tmp_path):
    # held out: BackboneFinetuning froze the convs for an epoch, then trained them; the
    # summary kept "frozen_layers" as a problem to the end
    model = WideNet()
    model.conv1.weight.requires_grad_(False)
    monitor = KernelMonitor(every_n_steps=2, layers=["conv1"])
    _, trainer, acc = run(tmp_path, [monitor, AtStep(6, unfreeze)], model, steps=12)
    changes = [e.value for e in acc.Scalars("kernels/conv1/relative_change")]
    assert changes[:2] == [0.0, 0.0] and all(c > 0 for c in changes[3:])
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "note" and found.figures["moving_since"] == 8
    assert found.message.startswith("Layers change again at step 8 (epoch 0): `conv1`, still at")


class CutRate(L.Callback):
    """Cuts every group's rate 1e12x at ``step`` as ``ReduceLROnPlateau`` can: no ``initial_lr``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            for group in trainer.optimizers[0].param_groups:
                assert "initial_lr" not in group
                group["lr"] *= 1e-12


def test_kernels_frozen_by_a_rate_a_plateau_scheduler_cut_names_the_cut(tmp_path):
    # setups hunt 81: ReduceLROnPlateau cut 0.05 -> 5e-16 (it records no `initial_lr`):
    # told "no gradient reaches them (it vanishes on the way down ...)"
    _, trainer, acc = run(tmp_path, [KernelMonitor(every_n_steps=2), CutRate(2)], EdgeNet(0.05), 10)
    changes = [e.value for e in acc.Scalars("kernels/conv2/relative_change")]
    assert changes == [0.0] * 4  # from the first event after the cut
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert (
        "a schedule has cut their learning rate 1,000x or more below the one set" in found.message
    )
    assert "no gradient reaches" not in found.message


def freeze(model):  # "freeze the backbone after warm-up"
    for conv in (model.conv1, model.conv2):
        conv.weight.requires_grad_(False)


def test_kernels_frozen_after_training_is_a_note_however_random_it_looks(tmp_path):
    # hunt 89: a timm resnet10t trained 150 steps, then frozen (val rising on), was told
    # "Their kernels look untrained", a problem: a few steps leave 3x3 kernels uncorrelated
    monitor = KernelMonitor(every_n_steps=2)
    _, trainer, acc = run(tmp_path, [monitor, AtStep(8, freeze)], WideNet(), steps=14)
    assert all(e.value > 0 for e in acc.Scalars("kernels/conv1/relative_change")[:3])
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "note" and "neighbour_r" not in found.figures
    assert monitor.extra_state()["trained"] == ["conv1", "conv2"]


def test_kernels_frozen_layers_written_once_are_still_frozen(tmp_path):
    # setups hunt 57: a frozen random backbone written once in place at step 13 was told
    # "Layers change again ... now train" to the end of the fit
    model = WideNet()
    model.conv1.weight.requires_grad_(False)
    monitor = KernelMonitor(every_n_steps=2, layers=["conv1"])
    _, trainer, acc = run(tmp_path, [monitor, AtStep(7, halve)], model, steps=14)
    changes = [e.value for e in acc.Scalars("kernels/conv1/relative_change")]
    assert changes.count(0.0) == len(changes) - 1 and max(changes) > 0.4  # the one write
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert "moving_since" not in found.figures and found.message.startswith("Frozen layers")


class DetachedLoss(EdgeNet):
    """Returns the loss's value as a new leaf: the backward reaches no parameter."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return torch.tensor(loss.item(), requires_grad=True)


def test_kernels_nothing_learns_when_no_parameter_gets_a_gradient_is_a_problem(tmp_path):
    # held out: a detached loss and `zero_grad()` between backward and step froze every
    # layer; a note pointed at `vanishing_gradients` and `dead_units`, which never came
    with pytest.warns(UserWarning, match="no parameter of the model holds a gradient"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), DetachedLoss(0.05), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "`torch.tensor(loss.item())`" in found.message
    assert "vanishing_gradients" not in found.message


class ConstantLoss(EdgeNet):
    """A loss that stays 0 whatever the weights: every gradient exists and is 0."""

    def training_step(self, batch, batch_idx):
        return 0.0 * super().training_step(batch, batch_idx)


def test_kernels_a_constant_loss_is_told_apart_from_a_detached_one(tmp_path):
    # setups hunt 20: one class (cross-entropy over one logit: always 0) was told "the
    # loss is cut from the model ... or zero_grad() between backward and step"
    with pytest.warns(UserWarning, match="every gradient is exactly 0 after the backward"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), ConstantLoss(0.05), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "`.detach()`" not in found.message


class MarginMet(EdgeNet):
    """A loss above 0 at the first step, exactly 0 after: a margin every sample meets."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss if self.global_step == 0 else torch.relu(-loss)  # a hinge at 0


def test_kernels_a_loss_at_exactly_0_after_a_start_above_it_names_a_met_margin(tmp_path):
    # setups hunt 76: a triplet loss 0.603, 0.149, then 0.0 (every triplet met) was told
    # "the loss does not change with the weights, a constant ... the model cannot learn"
    with pytest.warns(UserWarning, match="and so is the loss `training_step` returns"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), MarginMet(0.05), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "a margin or hinge loss" in found.message
    assert "a constant" not in found.message and "Nothing learns from here" in found.message


class BackboneAtZero(WideNet):
    """WideNet whose convs sit in a parameter group at learning rate 0 (the head learns)."""

    def configure_optimizers(self):
        convs = [*self.conv1.parameters(), *self.conv2.parameters()]
        groups = [{"params": convs, "lr": 0.0}, {"params": self.fc.parameters()}]
        return torch.optim.SGD(groups, lr=self.lr)


def test_kernels_a_backbone_group_at_learning_rate_0_from_random_init_is_a_problem(tmp_path):
    # held out (hunt 15): the convs' group at lr 0, the head at 1e-3: 79% val vs 96.5%,
    # told as a note about schedules
    with pytest.warns(UserWarning, match="Their kernels look untrained"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), BackboneAtZero(), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "their learning rate is 0" in found.message
    assert "with a learning rate above 0" in found.message


class HeadOnly(WideNet):
    """WideNet whose optimiser holds only ``fc``: the convs are left out of it."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.fc.parameters(), lr=self.lr)


class BackboneOnly(WideNet):
    """WideNet whose optimiser holds only the convs: the head ``fc`` is left out of it."""

    def configure_optimizers(self):
        convs = [*self.conv1.parameters(), *self.conv2.parameters()]
        return torch.optim.SGD(convs, lr=self.lr)


def test_kernels_parameters_no_optimiser_holds_are_a_note_naming_them(tmp_path):
    # held out: a classifier head never passed to the optimiser (unwatched: a Linear),
    # 20-26 points of val accuracy lost and "no problems found"
    _, trainer, _ = run(tmp_path / "head", KernelMonitor(every_n_steps=2), BackboneOnly())
    (found,) = [f for f in findings_of(trainer) if f.kind == "not_optimised"]
    assert (found.severity, found.step, found.figures["parameters"]) == ("note", 2, 2)
    assert "`fc.weight`, `fc.bias`" in found.message and "never change" in found.message
    # watched layers left out are the frozen-layers finding's; a full optimiser: quiet
    for model, name in ((HeadOnly(), "convs"), (WideNet(), "all")):
        _, trainer, _ = run(tmp_path / name, KernelMonitor(every_n_steps=2), model, steps=8)
        assert "not_optimised" not in {f.kind for f in findings_of(trainer)}
        # ... told at the first unchanged log, as with `requires_grad=False` (hunt 58: a
        # log later, though the monitor knew no optimiser held them)
        frozen = [f.step for f in findings_of(trainer) if f.kind == "frozen_layers"]
        assert frozen == ([4] if name == "convs" else [])


class AddHead(L.Callback):
    """Adds the head ``fc`` to the optimiser at step 4 (``optimizer.add_param_group``)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 4 and len(trainer.optimizers[0].param_groups) == 1:
            trainer.optimizers[0].add_param_group({"params": list(pl_module.fc.parameters())})


def test_kernels_parameters_added_to_the_optimiser_later_are_told_held(tmp_path):
    # setups hunt 57: the head added at epoch 1 trained, and the note kept "they never change"
    monitor = KernelMonitor(every_n_steps=2)
    _, trainer, _ = run(tmp_path, [monitor, AddHead()], BackboneOnly(), steps=10)
    (found,) = [f for f in findings_of(trainer) if f.kind == "not_optimised"]
    assert found.figures["held_since"] == 6 and found.severity == "note"
    assert found.message.startswith("Parameters no optimiser held at step 2 are held by one")
    assert "never change" not in found.message


class SlowBackbone(WideNet):
    """WideNet whose convs sit in a parameter group at ``ratio`` of the head's rate (Adam)."""

    def __init__(self, ratio: float) -> None:
        super().__init__(lr=1e-3)
        self.ratio = ratio

    def configure_optimizers(self):
        convs = [*self.conv1.parameters(), *self.conv2.parameters()]
        groups = [{"params": convs, "lr": self.lr * self.ratio}, {"params": self.fc.parameters()}]
        return torch.optim.Adam(groups, lr=self.lr)


def test_kernels_frozen_layers_at_a_tiny_rate_are_a_problem_at_random_init(tmp_path):
    # a random-init backbone's group at 1e-7 beside a head at 1e-3 (Adam) moved its kernels
    # 1e-5 to 1e-4 of their size a log, 94.6% val vs 96.3%, and nothing was said
    with pytest.warns(UserWarning, match="Their kernels look untrained"):
        _, trainer, acc = run(
            tmp_path / "tiny", KernelMonitor(every_n_steps=2), SlowBackbone(1e-4), steps=8
        )
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and found.step == 6
    assert "barely changed" in found.message and "1,000x or more below" in found.message
    assert "a learning rate near the others'" in found.message
    change = [e.value for e in acc.Scalars("kernels/conv1/relative_change")]
    assert 0 < max(change) < 1e-3  # moving, but all but still
    # 100x below the head: a gentle fine-tuning rate, whose kernels move; quiet
    _, trainer, _ = run(
        tmp_path / "gentle", KernelMonitor(every_n_steps=2), SlowBackbone(1e-2), steps=8
    )
    assert "frozen_layers" not in {f.kind for f in findings_of(trainer)}


class DeadAfterConvs(WideNet):
    """WideNet whose last conv's ReLU is silenced (bias -100): no gradient reaches the convs."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.conv2.bias.fill_(-100.0)


def test_kernels_frozen_layers_name_the_reason_and_blame_only_the_set_up(tmp_path):
    # left out of the optimiser at random init: the set-up keeps them, a problem
    with pytest.warns(UserWarning, match="left out of the optimiser"):
        _, trainer, _ = run(tmp_path / "out", KernelMonitor(every_n_steps=2), HeadOnly(), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and found.step == 4  # the first unchanged log
    assert "they are left out of the optimiser's parameter groups" in found.message
    # held out: biases of -5 killed every ReLU; the convs stayed at their init, a
    # consequence (a note pointing at the dead units), not "frozen random features"
    _, trainer, _ = run(
        tmp_path / "dead", KernelMonitor(every_n_steps=2), DeadAfterConvs(), steps=8
    )
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "note" and "neighbour_r" not in found.figures
    assert "no gradient reaches them" in found.message and "dead_strip" in found.message


class DeadBeforeBiased(WideNet):
    """WideNet whose first conv's ReLU is silenced: conv2 learns its bias on zeros alone."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.conv1.bias.fill_(-100.0)
            self.conv2.bias.fill_(0.5)  # the head gets the same value for every image


def test_kernels_frozen_layers_behind_dead_units_feeding_a_constant_are_no_cut(tmp_path):
    # hunt 54: conv2's biases shifted -8 killed every unit after it; the next conv learnt
    # only its bias and fed the head a constant: told "an operation between them and the
    # loss passes no gradient (`torch.round`, ...)" beside the dead units
    _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), DeadBeforeBiased(), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "note" and "no gradient reaches them" in found.message
    assert "torch.round" not in found.message


class DetachedConvs(WideNet):
    """WideNet whose forward detaches the convs' output (a user's slip): they never train."""

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2).detach()
        return self.fc(x.flatten(1))


def test_kernels_frozen_layers_cut_off_by_a_detach_are_a_problem_naming_it(tmp_path):
    # held out: `.detach()` after a conv stem kept it at its random init (92% val: random
    # features) and was told as a note pointing at dead units
    with pytest.warns(UserWarning, match="Their kernels look untrained"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), DetachedConvs(), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "`.grad` stays None" in found.message
    assert found.message.endswith(
        "remove the `.detach()` or `torch.no_grad()` that cuts their output off from the loss "
        "(or pass `use_reentrant=False` to `checkpoint`)."
    )
    # setups hunt 47: a block under reentrant checkpointing over inputs that need no
    # gradient gets none, told without naming it
    assert "`checkpoint(..., use_reentrant=True)` whose inputs need no gradient" in found.message
