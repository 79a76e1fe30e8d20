"""Frozen layers under a 16-bit loss scaler: its skipped steps are not a frozen model.

``precision="16-mixed"`` skips every optimizer step whose gradients overflow float16 and
halves its scale; on a GPU the first steps of a run often overflow. CPU autocast runs the
same plugin with a CPU ``GradScaler``.
"""

from __future__ import annotations

import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.kernels.callback import KernelMonitor
from tests.monitors import TinyCNN, fit, loaders


def _fit(tmp_path, model, init_scale: float, steps: int):
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    monitor = KernelMonitor(every_n_steps=2, strict=True)
    data = loaders(n_train=8 * steps, n_val=16, batch_size=8)
    trainer, _, said = fit(tmp_path, [monitor], model=model, data=data, plugins=[plugin],
                           max_steps=steps, limit_train_batches=None)  # fmt: skip
    return trainer, scaler, said


class _Float16Range(torch.autograd.Function):
    """Identity forward; backward, a gradient past float16's range becomes inf.

    What a float16 backward does, whatever autocast casts on this machine's torch.
    """

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.where(grad.abs() > 65504, torch.inf, grad)


class _Float16CNN(TinyCNN):
    def forward(self, x):
        return _Float16Range.apply(super().forward(x))


def test_frozen_loss_scaler_searching_its_scale_is_no_frozen_layer(tmp_path):
    # a scale of 1e12 overflows for the first ~20 steps, then the run trains
    torch.manual_seed(0)
    model = _Float16CNN()
    before = model.conv1.weight.detach().clone()
    trainer, scaler, said = _fit(tmp_path, model, 1e12, 40)
    assert scaler.get_scale() < 1e8  # it did skip steps
    assert not torch.equal(model.conv1.weight.detach(), before)  # and trained after
    assert [f for f in findings_of(trainer) if f.kind == "frozen_layers"] == []
    assert not [s for s in said if "Frozen layers" in s]


class _Overflow(torch.autograd.Function):
    """Identity forward; an infinite gradient backward, whatever the loss scale."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, torch.inf)


class _OverflowingCNN(TinyCNN):
    def forward(self, x):  # the same outputs; the head's bias gets an inf gradient
        return super().forward(x) + 0.0 * _Overflow.apply(self.fc.bias).sum()


def test_frozen_every_step_skipped_by_the_loss_scaler_is_a_problem_saying_so(tmp_path):
    torch.manual_seed(0)
    model = _OverflowingCNN()
    before = model.fc.weight.detach().clone()
    trainer, scaler, said = _fit(tmp_path, model, 2.0**16, 60)
    assert scaler.get_scale() < 1.0 and torch.equal(model.fc.weight.detach(), before)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem"
    assert "gradients are not finite (NaN or inf)" in found.message
    assert "The loss scaler has lowered its scale to" in found.message
    assert "every gradient is exactly 0" not in found.message
    assert [s for s in said if s.startswith("Frozen layers")] == [found.message]
