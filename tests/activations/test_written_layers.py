"""A layer written outside the optimiser mid-run, told as such by every finding it sets off."""

import math

import torch

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from tests.activations.series import figures, info


def test_written_layer_names_the_spike_it_made_and_the_units_it_silenced():
    # hunt 73: conv2's biases -20 at step 1000 of a healthy run; the loss spiked and came
    # back to a new low with half of conv2's channels dead to the end: a note "a brief
    # overshoot (an odd batch, a learning-rate step)" and a dead-units note "learning goes on"
    def run(written):
        diagnosis, said, sites = TrainingDiagnosis(0.25, 16, 0.025), [], {"relu": info("rectifier")}
        for log in (50, 100, 150, 200):
            for s in range(log - 50, log):
                loss = (
                    0.05 + 2.25 * math.exp(-s / 20) + (2.0 * 0.85 ** (s - 152) if s >= 152 else 0)
                )
                diagnosis.loss.add(s, torch.tensor(loss))
            chance = (10, 2.31) if diagnosis.wants_chance() else None
            late = written and log >= 200
            said += diagnosis.review(
                log, 0, {"relu": figures(dead=0.5 if late else 0.0, width=32)}, sites, [], list,
                chance, norms={"conv": 5.6, "conv:bias": 111.0 if late else 0.4}, lr=0.02,
            )  # fmt: skip
        return said

    dead, spike = sorted((v for v in run(True) if v.kind in ("divergence", "dead_units")),
                         key=lambda v: v.kind)  # fmt: skip
    write = "The biases of `conv` jumped from norm 0.4 to 111 between two logs"
    assert spike.severity == "note" and write in spike.message
    assert "an odd batch" not in spike.message
    assert dead.severity == "problem" and write in dead.message
    # the same spike with no layer written is an overshoot, and no unit died
    (spike,) = [v for v in run(False) if v.kind == "divergence"]
    assert "a brief overshoot (an odd batch, a learning-rate step)" in spike.message


def test_written_layer_names_the_dormant_units_behind_a_leaky_activation():
    # hunt 75: a LayerNorm's shift set to -20 before GELU silenced every unit after it,
    # told "dormant ... lower the learning rate; use He init", the write unnamed
    diagnosis, said, sites = TrainingDiagnosis(0.25, 16, 0.025), [], {"gelu": info("leaky")}
    for log in (50, 100, 150):
        for s in range(log - 50, log):
            diagnosis.loss.add(s, torch.tensor(0.05 + 2.25 * math.exp(-s / 20)))
        chance = (10, 2.31) if diagnosis.wants_chance() else None
        late = log >= 150
        said += diagnosis.review(
            log, 0, {"gelu": figures(dormant=1.0 if late else 0.0, width=32)}, sites, [], list,
            chance, norms={"ln": 5.6, "ln:bias": 113.0 if late else 0.18}, lr=1e-3,
        )  # fmt: skip
    (dormant,) = [v for v in said if v.kind == "dormant_units"]
    assert dormant.severity == "problem"
    assert "The biases of `ln` jumped from norm 0.18 to 113 between two logs" in dormant.message
    assert "find what writes that layer during training" in dormant.message
    assert "lower the learning rate" not in dormant.message
