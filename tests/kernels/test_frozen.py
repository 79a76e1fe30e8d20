"""Frozen layers: kernels as initialised told apart from trained ones, on real model zoos."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from lightning_cnnviz.kernels.frozen import still_layers, still_reason, tiny_rate
from lightning_cnnviz.kernels.frozen_words import frozen_text
from lightning_cnnviz.kernels.untrained import neighbour_correlation, untrained_look


def _convs(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: torchvision.models.resnet18(weights=None),
        lambda: torchvision.models.mobilenet_v3_small(weights=None),
        lambda: timm.create_model("resnet10t", pretrained=False),
        lambda: timm.create_model("convnext_atto", pretrained=False),
        lambda: nn.Sequential(nn.Conv1d(4, 32, 5), nn.Conv3d(32, 32, 3)),
    ],
)
def test_frozen_model_zoo_initialisations_look_untrained(make):
    torch.manual_seed(0)
    r = untrained_look(_convs(make()))
    assert r is not None and abs(r) < 0.05


def test_frozen_trained_kernels_do_not_look_untrained():
    # a 3x3 kernel trained on digits is smooth: neighbouring taps alike, plus noise
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-1, 1, 3)
    plane = ramp[:, None] + ramp[None, :]  # a smooth gradient across the kernel
    smooth = torch.randn(64, 16, 1, 1, generator=g) * plane
    weight = smooth + 0.3 * torch.randn(64, 16, 3, 3, generator=g)
    r, pairs = neighbour_correlation(weight)
    assert r > 0.3 and pairs == 64 * 16 * 12
    assert untrained_look([weight]) is None
    assert untrained_look([torch.randn(4, 2, 3, 3)]) is None  # 96 pairs: too few to tell
    assert neighbour_correlation(torch.randn(8, 8, 1, 1)) is None  # 1x1: no neighbours


def test_frozen_text_a_rate_at_zero_points_at_the_schedule_not_requires_grad():
    # held out: a LambdaLR factor of 0 from step 50 stopped every layer, in the optimiser
    # with requires_grad=True; the note said to set requires_grad=True
    why = {"conv1": "lr_zero", "conv2": "lr_zero"}
    text = frozen_text(["conv1", "conv2"], why, 2, 50, 150, 3, None)
    assert "their learning rate is 0" in text and "check its schedule" in text
    assert "requires_grad" not in text
    mixed = frozen_text(
        ["conv1", "conv2"], {"conv1": "lr_zero", "conv2": "no_grad"}, 2, 50, 150, 3, None
    )
    assert "with a learning rate above 0" in mixed


def test_frozen_tiny_rate_counts_a_barely_moving_layer_as_still():
    backbone, head = nn.Conv2d(1, 4, 3), nn.Linear(4, 2)
    groups = [{"params": [backbone.weight], "lr": 1e-7}, {"params": [head.weight], "lr": 1e-3}]
    assert tiny_rate(backbone.weight, groups) == pytest.approx(1e-4)
    assert tiny_rate(head.weight, groups) is None
    assert still_reason(backbone.weight, groups) == "lr_tiny"
    groups[0]["lr"] = 1e-5  # 100x below: fine-tuning gently, not frozen
    assert tiny_rate(backbone.weight, groups) is None
    counts = {}
    seen = [still_layers(counts, {"conv": 2e-5}, nearly={"conv"}) for _ in range(2)]
    assert seen == [[], ["conv"]]
    assert still_layers({}, {"conv": 2e-5}) == []  # at the usual rate it moves
    assert [still_layers(counts, {"conv": 5e-3}, nearly={"conv"})] == [[]] and counts["conv"] == 0


def test_frozen_a_rate_held_as_none_is_its_optimisers_own_step():
    # setups hunt 70: Adafactor-style groups at `lr=None` made KernelMonitor step aside
    # ("float() argument must be ... not 'NoneType'") on a healthy run
    conv = nn.Conv2d(1, 4, 3)
    conv.weight.grad = torch.ones_like(conv.weight)
    groups = [{"params": [conv.weight], "lr": None}]
    assert tiny_rate(conv.weight, groups) is None
    assert still_reason(conv.weight, groups) not in ("lr_zero", "lr_cut", "lr_tiny")


def test_frozen_text_a_tiny_rate_says_barely_and_names_the_group():
    text = frozen_text(["conv1"], {"conv1": "lr_tiny"}, 2, 50, 150, 3, None)
    assert "barely changed (under 0.1% a log)" in text
    assert "right for pretrained layers meant to stay nearly fixed" in text
    assert "requires_grad" not in text


def test_frozen_a_gradient_hook_on_a_layer_is_named_not_a_vanishing_gradient(tmp_path):
    # hunt 27: a hook zeroed conv2's own gradient while conv1, before it, kept learning:
    # told "no gradient reaches them (it vanishes on the way down ...)", a note
    from lightning_cnnviz.core.findings import findings_of
    from lightning_cnnviz.kernels.callback import KernelMonitor
    from tests.monitors import TinyCNN, fit, loaders

    torch.manual_seed(0)
    model = TinyCNN()
    for p in model.conv2.parameters():
        p.register_hook(torch.zeros_like)
    data = loaders(n_train=64, n_val=16, batch_size=8)
    trainer, _, _ = fit(tmp_path, [KernelMonitor(every_n_steps=2)], model=model, data=data,
                        limit_train_batches=None)  # fmt: skip
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.figures["names"] == ["conv2"]
    assert "whose gradients pass through a hook (`register_hook`, or a backward" in found.message
    assert "vanishes on the way down" not in found.message


@pytest.mark.parametrize("spectral", [False, True])
def test_frozen_hooks_zeroing_every_conv_are_named_not_a_blocked_operation(tmp_path, spectral):
    # hunt 41: `g * 0` on every parameter but the head's, told "an operation passes no
    # gradient (`torch.round` ...), use a straight-through estimator"; hunt 46: the same
    # on spectral-norm convs, told "left out of the optimiser's parameter groups"
    from lightning_cnnviz.core.findings import findings_of
    from lightning_cnnviz.kernels.callback import KernelMonitor
    from tests.monitors import TinyCNN, fit, loaders

    torch.manual_seed(0)
    model = TinyCNN()
    for conv in (model.conv1, model.conv2):
        if spectral:
            nn.utils.parametrizations.spectral_norm(conv)
        for p in conv.parameters():
            p.register_hook(torch.zeros_like)
    data = loaders(n_train=64, n_val=16, batch_size=8)
    trainer, _, _ = fit(tmp_path, [KernelMonitor(every_n_steps=2)], model=model, data=data,
                        limit_train_batches=None)  # fmt: skip
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.figures["names"] == ["conv1", "conv2"]
    assert "whose gradients pass through a hook" in found.message
    assert "torch.round" not in found.message and "parameter groups" not in found.message


class LoRA(nn.Module):
    """``weight + A @ B``: a low-rank adapter through ``torch.nn.utils.parametrize``."""

    def __init__(self, weight: torch.Tensor, rank: int = 2) -> None:
        super().__init__()
        self.shape = weight.shape
        self.A = nn.Parameter(torch.randn(weight.shape[0], rank))
        self.B = nn.Parameter(torch.zeros(rank, weight[0].numel()))

    def forward(self, weight):
        return weight + (self.A @ self.B).view(self.shape)


def test_frozen_parametrized_weight_whose_adapter_learns_is_not_frozen(tmp_path):
    # setups hunt 48: LoRA convs (the original frozen, the adapter trained) logged
    # `relative_change` 0 and were told frozen while their weights moved 65%
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_cnnviz.core.findings import findings_of
    from lightning_cnnviz.kernels.callback import KernelMonitor
    from tests.monitors import TinyCNN, fit, loaders

    torch.manual_seed(0)
    model = TinyCNN()
    for conv in (model.conv1, model.conv2):
        nn.utils.parametrize.register_parametrization(conv, "weight", LoRA(conv.weight))
        conv.parametrizations.weight.original.requires_grad_(False)
    data = loaders(n_train=64, n_val=16, batch_size=8)
    trainer, _, _ = fit(tmp_path, [KernelMonitor(every_n_steps=2)], model=model, data=data,
                        limit_train_batches=None)  # fmt: skip
    assert not [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    acc = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent))
    acc.Reload()
    changes = [e.value for e in acc.Scalars("kernels/conv2/relative_change")]
    assert len(changes) >= 3 and min(changes) > 0


class Rounded(nn.Module):
    """TinyCNN's features rounded to quarters before the head; ``ste``: gradients pass."""

    def __init__(self, ste: bool) -> None:
        super().__init__()
        self.ste = ste

    def forward(self, x):
        q = torch.round(x * 4) / 4
        return x + (q - x).detach() if self.ste else q


@pytest.mark.parametrize("ste", [False, True])
def test_frozen_a_gradient_cut_below_the_head_is_a_problem_naming_it(tmp_path, ste):
    # hunt 31: activations rounded without a straight-through estimator left every
    # convolution at a gradient of exactly 0 while the head learnt (63% against 95%):
    # told "no gradient reaches them (it vanishes on the way down ...)", a note
    from lightning_cnnviz.core.findings import findings_of
    from lightning_cnnviz.kernels.callback import KernelMonitor
    from tests.monitors import TinyCNN, fit, loaders

    torch.manual_seed(0)
    model = TinyCNN()
    model.pool2 = nn.Sequential(model.pool2, Rounded(ste))
    data = loaders(n_train=64, n_val=16, batch_size=8)
    trainer, _, _ = fit(tmp_path, [KernelMonitor(every_n_steps=2)], model=model, data=data,
                        limit_train_batches=None)  # fmt: skip
    found = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    if ste:
        assert found == []
        return
    (found,) = found
    assert found.severity == "problem" and found.figures["names"] == ["conv1", "conv2"]
    assert "an operation between them and the loss passes no gradient (`torch.round`" in (
        found.message
    )
    assert "vanishes on the way down" not in found.message


def _zeroed_from(start: int, how: str):
    """TinyCNN (SGD, momentum 0.9) whose gradients are 0 from step ``start`` on, by ``how``."""
    from tests.monitors import TinyCNN

    class Zeroed(TinyCNN):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            if how.startswith("alternate"):  # every other batch unlabelled: a loss of 0
                return loss * (self.global_step % 2 == int(how[-1]))
            if how == "blocks":  # 4 of every 8 batches unlabelled, in a block
                return loss * (self.global_step % 8 >= 4)
            return loss * 0 if how == "loss" and self.global_step >= start else loss

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            optimizer.step(closure=optimizer_closure)
            if how == "after_step":  # a healthy run zeroing its gradients after each step
                optimizer.zero_grad(set_to_none=False)

    class Stepped(TinyCNN):  # manual optimisation stepping before the backward
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            optimizer.zero_grad()
            optimizer.step()
            self.manual_backward(self._step(batch, "train"))

    class TwoOptimisers(TinyCNN):  # manual optimisation: two steps a batch
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def configure_optimizers(self):
            head = list(self.fc.parameters())
            body = [p for p in self.parameters() if all(p is not q for q in head)]
            return [torch.optim.SGD(ps, lr=self.lr, momentum=0.9) for ps in (body, head)]

        def training_step(self, batch, batch_idx):
            optimizers = self.optimizers()
            for optimizer in optimizers:
                optimizer.zero_grad()
            self.manual_backward(self._step(batch, "train"))
            for optimizer in optimizers:
                optimizer.step()

    if how == "step_first":
        return Stepped()
    model = TwoOptimisers() if how == "two_optimisers" else Zeroed()
    if how in ("hooks", "two_optimisers", "hooks_by_epoch"):
        for p in model.parameters():
            p.register_hook(lambda g: g * 0 if model.global_step >= start else g)
    return model


@pytest.mark.parametrize("how", ["hooks", "loss", "after_step", "alternate0", "alternate1",
                                 "step_first", "two_optimisers", "hooks_by_epoch",
                                 "blocks"])  # fmt: skip
def test_frozen_every_gradient_zero_mid_run_is_told_while_momentum_moves_the_weights(tmp_path, how):
    # hunt 41: hooks zeroing every gradient from epoch 3 under Adam: its momentum drifted
    # the weights on (val 93% -> 79%), told "the updates have grown too large"
    from lightning_cnnviz.core.findings import findings_of
    from lightning_cnnviz.kernels.callback import KernelMonitor
    from tests.monitors import fit, loaders

    torch.manual_seed(0)
    data = loaders(n_train=64, n_val=16, batch_size=8)
    # two steps a batch (manual optimisation): the automatic schedule's events fall between
    monitor = KernelMonitor() if how == "two_optimisers" else KernelMonitor(every_n_steps=2)
    if how == "hooks_by_epoch":  # setups hunt 44: `.grad` None at an epoch's end, told as
        monitor = KernelMonitor(every_n_epochs=1)  # a loss cut from the model
    trainer, _, said = fit(tmp_path, [monitor], data=data,
                           model=_zeroed_from(8, how), max_epochs=3,
                           limit_train_batches=None)  # fmt: skip
    found = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    if how in ("after_step", "blocks") or how.startswith("alternate"):  # healthy: steps
        # got gradients (hunt 43: every other batch unlabelled, the events on those, told
        # "learnt nothing"; hunt 44: 4 of 8 in a block, two events on them in a row)
        assert found == []
        return
    (found,) = found
    if how == "two_optimisers":  # setups hunt 43: the read never ran, nothing told
        assert found.severity == "problem" and "have learnt nothing" in found.message
        return
    if how == "hooks_by_epoch":
        assert "gradients pass through a hook (`register_hook`" in found.message
        assert "is cut from the model" not in found.message
        return
    if how == "step_first":  # hunt 43: told as a gradient vanishing on its way down
        assert found.severity == "problem" and "`step` before `manual_backward`" in (found.message)
        assert "vanishes on the way down" not in found.message
        return
    assert (found.severity, found.step) == ("problem", 18)  # 0 from step 8: ZERO_STEPS on
    assert "have learnt nothing (only the optimiser's momentum" in found.message
    hooks = "and gradients pass through a hook (`register_hook`"
    assert (hooks in found.message) is (how == "hooks")
    # a loss turned to 0 mid-run reads as a margin every sample meets too: both named
    settled = "or the loss is multiplied by 0" if how == "loss" else "Fix that first"
    assert settled in found.message and "requires_grad=True" not in found.message
    assert any(found.message in s for s in said)


@pytest.mark.parametrize(("first", "head"), [(True, True), (False, True), (True, False)])
def test_frozen_gradients_zeroed_between_backward_and_step_are_named(tmp_path, first, head):
    # hunt 42: a callback zeroing every gradient but the head's in `on_before_optimizer_step`
    # (autograd delivered them) was told "an operation passes no gradient (`torch.round`)";
    # hunt 92: every gradient, the head's too, told "the loss does not change with the weights"
    import lightning as L

    from lightning_cnnviz.core.findings import findings_of
    from lightning_cnnviz.kernels.callback import KernelMonitor
    from tests.monitors import TinyCNN, fit, loaders

    class ZeroBackbone(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            for module in (pl_module.conv1, pl_module.conv2) if head else (pl_module,):
                for p in module.parameters():
                    p.grad.zero_()

    torch.manual_seed(0)
    ours = KernelMonitor(every_n_steps=2)
    callbacks = [ZeroBackbone(), ours] if first else [ours, ZeroBackbone()]
    data = loaders(n_train=64, n_val=16, batch_size=8)
    trainer, _, _ = fit(tmp_path, callbacks, model=TinyCNN(), data=data, limit_train_batches=None)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and found.figures["names"] == ["conv1", "conv2"]
    assert "a gradient after the backward, and 0 after the step" in found.message
    assert "torch.round" not in found.message and "Fix that first" in found.message
    assert "the loss does not change with the weights" not in found.message
