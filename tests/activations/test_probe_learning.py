"""Silent units under heavy dropout: learning read where dropout is off (held-out hunt 122).

``Dropout(0.9)`` before the last Linear keeps the training loss near its start while the
model learns; the probe pass runs in eval mode, its cross-entropy falling at every log.
"""

import math

import torch

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from tests.activations.series import figures, review, said

# held-out hunt 122, seed 1: `net.8`'s dead share and the probe's accuracy and own
# cross-entropy at each log (16 images, eval mode); val 64% -> 89% over the run
LOGS = (9, 20, 40, 80, 120)
DEAD = {9: 0.30, 20: 0.52, 40: 0.58, 80: 0.58, 120: 0.53}
PROBE = {
    9: (0.0625, 2.30),
    20: (0.25, 2.28),
    40: (0.44, 2.13),
    80: (0.69, 1.67),
    120: (0.875, 1.39),
}


def _dropout_losses(seed=0):
    """A training loss held up by dropout: 2.30 -> 1.9 by step 80, flat to step 120, +-15%."""
    g = torch.Generator().manual_seed(seed)
    noise = 1 + 0.15 * (2 * torch.rand(120, generator=g) - 1)
    return [(s, (2.3 - 0.4 * min(s, 80) / 80) * float(noise[s - 1])) for s in range(1, 121)]


def _run(probe):
    diagnosis, told, done = TrainingDiagnosis(0.25, 16, 0.025), [], 0
    losses = _dropout_losses()
    for step in LOGS:
        acc, own = probe[step]
        chance = (10, math.log(10)) if diagnosis.wants_chance() else None
        figs = {"net.8": figures(dead=DEAD[step], width=64)}
        told += review(diagnosis, step, losses[done:step], figs, {"net.8": "rectifier"},
                       chance=chance, probe_acc=acc, probe_loss=own)  # fmt: skip
        done = step
    return told


def test_probe_learning_heavy_dropout_dead_units_stay_a_note():
    told = _run(PROBE)
    assert [(v.kind, v.severity) for v in told] == [("dead_units", "note")]
    assert "lower the learning rate" not in told[0].message


def test_probe_learning_a_probe_that_stalls_too_keeps_the_problem():
    # the same run with the probe stuck from step 40 (its loss and accuracy flat): a stall
    stuck = {s: PROBE[min(s, 40)] for s in LOGS}
    assert ("dead_units", "problem", "new") in said(_run(stuck))


# held-out hunt 123, seed 1: label smoothing 0.9 on 3 classes; `net.10`'s dead share at each
# log (TensorBoard `activations/net.10/dead_fraction`; told "55% ... up from 33%" at step 20)
# and a probe of 16 images (val 86% at step 15, 98% at 30, its cross-entropy under 2% a log)
SMOOTH_LOGS = (2, 5, 10, 20, 25, 30, 35, 40, 45)
SMOOTH_DEAD = dict(
    zip(SMOOTH_LOGS, (0.03, 0.05, 0.33, 0.55, 0.55, 0.59, 0.61, 0.61, 0.58), strict=True)
)
SMOOTH_ACC = dict(zip(SMOOTH_LOGS, (0.375, 0.4375, 0.75, 0.9375, 1, 1, 1, 1, 1), strict=True))


def _smoothed_losses(seed=0):
    """A loss held up by its floor: smoothing 0.9 on 3 classes, 1.100 -> 1.092 (floor 1.089)."""
    g = torch.Generator().manual_seed(seed)
    noise = 1 + 0.006 * (2 * torch.rand(45, generator=g) - 1)
    return [(s, (1.100 - 0.008 * s / 45) * float(noise[s - 1])) for s in range(1, 46)]


def _smoothed_run(acc, dead=SMOOTH_DEAD):
    diagnosis, told, done = TrainingDiagnosis(0.25, 16, 0.025), [], 0
    losses = _smoothed_losses()
    for step in SMOOTH_LOGS:
        chance = (3, math.log(3)) if diagnosis.wants_chance() else None
        figs = {"net.10": figures(dead=dead[step], width=64)}
        own = 1.097 - 0.002 * step  # the probe's cross-entropy
        told += review(diagnosis, step, losses[done:step], figs, {"net.10": "rectifier"},
                       chance=chance, probe_acc=acc[step], probe_loss=own)  # fmt: skip
        done = step
    return told


def test_probe_learning_label_smoothing_dead_units_stay_a_note():
    told = _smoothed_run(SMOOTH_ACC)
    assert [(v.kind, v.severity) for v in told] == [("dead_units", "note")]
    assert "lower the learning rate" not in told[0].message


def test_probe_learning_label_smoothing_note_says_the_probe_learnt():
    # first told at step 20 (the layer as silent at step 10 as at 5): the note says why
    told = _smoothed_run(SMOOTH_ACC, SMOOTH_DEAD | {10: 0.05})
    assert [(v.kind, v.severity) for v in told] == [("dead_units", "note")]
    assert told[0].message.startswith("Dead units at step 20")
    assert "the probe's images are 94% right; the loss fell 0%" in told[0].message


def test_probe_learning_label_smoothing_at_chance_keeps_the_problem():
    # the same loss and silent units with the probe at chance (6 of 16 right): no learning
    # shows anywhere, the units' rise is a problem
    told = _smoothed_run(dict.fromkeys(SMOOTH_LOGS, 0.375))
    assert ("dead_units", "problem", "new") in said(told)


def test_probe_learning_a_loss_risen_from_its_low_keeps_the_problem():
    # no floor: a loss that fell to 0.1 and rose back to 1.0 (steps 33-38) while 45% of the
    # layer fell silent, the probe still 15 of 16 right: the units' rise stays a problem
    g = torch.Generator().manual_seed(0)
    noise = 1 + 0.05 * (2 * torch.rand(60, generator=g) - 1)
    level = [1.1 - min(s, 30) / 30 if s <= 32 else 0.1 + 0.15 * min(s - 32, 6) for s in range(61)]
    losses = [(s, level[s] * float(noise[s - 1])) for s in range(1, 61)]
    diagnosis, told, done = TrainingDiagnosis(0.25, 16, 0.025), [], 0
    for step, dead, acc in zip(
        (5, 10, 20, 30, 40, 50, 60),
        (0.05, 0.06, 0.06, 0.06, 0.45, 0.45, 0.45),
        (0.375, 0.625, 0.9375, 1, 0.9375, 0.9375, 0.9375),
        strict=True,
    ):
        chance = (3, math.log(3)) if diagnosis.wants_chance() else None
        figs = {"net.10": figures(dead=dead, width=64)}
        told += review(diagnosis, step, losses[done:step], figs, {"net.10": "rectifier"},
                       chance=chance, probe_acc=acc, probe_loss=0.3)  # fmt: skip
        done = step
    assert ("dead_units", "problem", "new") in said(told)
