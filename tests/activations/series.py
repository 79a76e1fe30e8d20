"""Synthetic training series and figures shared by the training-side rule tests."""

import math

import torch

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.sites import SiteInfo


def healthy_losses(steps=200, seed=0):
    """Cross-entropy falling from ln(10) towards 0.1, with batch noise (+-30%)."""
    g = torch.Generator().manual_seed(seed)
    noise = 1 + 0.3 * (2 * torch.rand(steps, generator=g) - 1)
    return [(s + 1, (0.1 + 2.2 * math.exp(-s / 30)) * float(n)) for s, n in enumerate(noise)]


def figures(dead=0.0, dormant=0.0, nonfinite=0.0, saturation=None, width=8):
    out = {
        "active_share": torch.ones(width),
        "dead": torch.zeros(width),
        "dead_fraction": torch.tensor(dead),
        "dormant_fraction": torch.tensor(dormant),
        "nonfinite": torch.tensor(nonfinite),
    }
    out["dead"][: round(dead * width)] = 1.0
    if saturation is not None:
        out["saturation"] = torch.tensor(saturation)
    return out


def info(kind):
    return SiteInfo("m", "conv", 1, 8, "positive", None, kind == "rectifier", kind)


def review(diagnosis, step, losses, figs, kinds, profile=(), **read):
    for s, value in losses:
        diagnosis.loss.add(s, torch.tensor(value))
    sites = {site: info(kind) for site, kind in kinds.items()}
    return diagnosis.review(step, 0, figs, sites, list(profile), lambda: ["conv1.weight"], **read)


def collapsed(after, logs=(100, 120, 140), rate=1e-3, dead=0.0, acc=None, classes=10, **settings):
    """The divergence verdicts of a learnt loss replaced by ``after(step)`` from step 101.

    ``acc(step)``: the model's accuracy on the probe images at each log (default: unknown);
    ``classes``: K, the healthy losses scaled from ``ln 10`` to ``ln K``.
    """
    scale = math.log(classes) / math.log(10)
    series = [(s, v * scale) for s, v in healthy_losses(100)]
    series += [(s, after(s)) for s in range(101, 141)]
    diagnosis, said = TrainingDiagnosis(0.25, 16, 0.025), []
    kinds = {"relu": "rectifier"}
    for step, value in series:
        diagnosis.loss.add(step, torch.tensor(value))
        if step in (20, *logs):
            chance = (classes, 1.003 * math.log(classes)) if diagnosis.wants_chance() else None
            sites = {site: info(kind) for site, kind in kinds.items()}
            figs = {"relu": figures(dead=dead if step > 100 else 0.0)}
            lr = rate(step) if callable(rate) else rate
            probe_acc = acc(step) if acc is not None else None
            now = {k: v(step) if callable(v) else v for k, v in settings.items()}
            said += diagnosis.review(step, 0, figs, sites, [], list, chance, lr=lr,
                                     probe_acc=probe_acc, **now)  # fmt: skip
    return [v for v in said if v.kind == "divergence"]


def said(verdicts):
    """The verdicts as ``(kind, severity, change)``."""
    return [(v.kind, v.severity, v.change) for v in verdicts]


def flat(start, stop, value=1.38):
    """A loss series held at ``value`` from ``start`` to ``stop``."""
    return [(s, value) for s in range(start, stop)]
