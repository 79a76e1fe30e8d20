"""The run's settings as the remedies read them: lr (and its start), decay, dropout."""

import pytest
import torch
from torch import nn

from lightning_cnnviz.core.settings import read_settings


def net(p=0.0):
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout2d(p), nn.Flatten(), nn.Dropout(p / 2))


def test_settings_read_a_scheduled_sgd_run():
    model = net(0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.01)
    opt.step()
    sched.step()
    s = read_settings([opt], model)
    assert s.lr == pytest.approx(5e-4) and s.lr_initial == 0.05
    assert s.decay_per_step == pytest.approx(5e-8) and s.dropout == 0.8


def test_settings_decay_per_step_only_where_decoupled():
    model = net()
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=50.0)
    adam = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=50.0)
    assert read_settings([adamw], model).decay_per_step == pytest.approx(0.05)
    assert read_settings([adam], model).decay_per_step is None  # L2 in the gradient, rescaled
    assert read_settings([adam], model).dropout == 0.0


def test_settings_without_optimizer_or_dropout_are_unknown():
    s = read_settings([], nn.Linear(2, 2))
    assert (s.lr, s.lr_initial, s.weight_decay, s.decay_per_step, s.dropout) == (None,) * 5
    assert s.grad_clip is None


def test_settings_gradient_clipping_as_the_trainer_sets_it():
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    assert read_settings([opt], model, 1e-4).grad_clip == 1e-4
    assert read_settings([opt], model, 0).grad_clip is None  # Lightning's 0: no clipping
    assert read_settings([opt], model, None).grad_clip is None
