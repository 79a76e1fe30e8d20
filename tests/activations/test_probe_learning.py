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
