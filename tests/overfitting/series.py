"""Synthetic validation series and probe evaluations shared by the validation-rule tests."""

import math
import random

import torch

from lightning_cnnviz.overfitting.class_figures import probe_figures
from lightning_cnnviz.overfitting.evaluation import Evaluation


def run(**columns):
    """Evaluations at epochs 0, 1, ... (10 steps each) from equal-length columns."""
    n = len(next(iter(columns.values())))
    return [
        Evaluation(step=10 * (e + 1), epoch=e, **{k: v[e] for k, v in columns.items()})
        for e in range(n)
    ]


def first(rule, evs, **kw):
    """The first verdict of ``rule`` as evaluations arrive one by one (None if it never fires)."""
    for i in range(1, len(evs) + 1):
        if (verdict := rule(evs[:i], **kw)) is not None:
            return verdict
    return None


def decay(n, base=0.3, amp=1.5, tau=2.0, sigma=0.0, seed=0, rise_from=None, slope=0.0):
    rng = random.Random(seed)
    return [
        base
        + amp * math.exp(-i / tau)
        + (slope * (i - rise_from) if rise_from is not None and i > rise_from else 0.0)
        + rng.gauss(0, sigma)
        for i in range(n)
    ]


TRAIN = [1.0 / (i + 1) for i in range(40)]  # always falling


def probe(acc, loss=None, classes=10, size=128, **kw):
    return dict(
        probe_acc_val=acc,
        probe_loss_val=math.log(classes) if loss is None else loss,
        classes=float(classes),
        probe_size=float(size),
        **kw,
    )


def probe_run(rows):
    """Validations 25 steps apart (``not_learning`` from the start waits for 50 steps)."""
    return [Evaluation(step=25 * (i + 1), epoch=i, **row) for i, row in enumerate(rows)]


def bn(eval_acc, bn_acc, eval_loss=0.1, bn_loss=0.1):
    return dict(
        probe_acc_val=eval_acc,
        probe_acc_bn=bn_acc,
        probe_loss_val=eval_loss,
        probe_loss_bn=bn_loss,
        probe_size=128.0,
    )


def feed(detector, vals, train=None, **extra):
    """Feed val losses one by one; the changes by epoch as (epoch, change, kind, best epoch)."""
    out = []
    for e, v in enumerate(vals):
        t = train[e] if train else 1.0 / (e + 1)
        ev = Evaluation(step=10 * (e + 1), epoch=e, train_loss=t, val_loss=v, **extra)
        for c in detector.update(ev):
            best = c.verdict.best.epoch if c.verdict.best else None
            out.append((e, c.change, c.verdict.kind, best, c.verdict.severity))
    return out


# 4 classes: class 1 and 2 taken for class 3 (as a CNN on 90% class-0 shapes did)
LEFT_OUT = [[40, 0, 0, 0], [0, 1, 0, 15], [0, 0, 0, 16], [0, 0, 1, 15]]
SKEWED = torch.tensor([0.9, 0.033, 0.033, 0.034])


def class_ev(step, confusion=LEFT_OUT, shares=SKEWED, **kw):
    """An evaluation at ``step`` with the val probe's ``confusion`` and training ``shares``."""
    figures = probe_figures(confusion, shares)
    return Evaluation(step, step // 10, classes=float(len(confusion)), **figures, **kw)
