"""A divergence waiting on its spike holds dying units, then counts them in as part of it."""

import math

import pytest
import torch

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.episodes import die_off
from tests.activations.series import figures, flat, review, said


def smoothed_rise(diagnosis, start, stop, value):
    for s in range(start, stop):
        diagnosis.loss.add(s, torch.tensor(value))


def test_divergence_pending_spike_with_a_die_off_is_confirmed_at_once():
    # div_warmup_nan_sgd: best 0.42, the loss up to 2.5 by step 100 while a GELU layer
    # went 0% -> 97% dormant in the same log: one finding, divergence, at that log
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    kinds = {"gelu": "leaky", "relu": "rectifier"}
    quiet = {"gelu": figures(width=32), "relu": figures(width=32)}
    losses = [(s, 2.3 * math.exp(-s / 15) + 0.4) for s in range(1, 81)]
    assert review(diagnosis, 80, losses, quiet, kinds) == []
    smoothed_rise(diagnosis, 81, 101, 2.5)
    died = {"gelu": figures(dormant=0.97, width=32), "relu": figures(width=32)}
    (verdict,) = review(diagnosis, 100, [], died, kinds)
    assert (verdict.kind, verdict.severity) == ("divergence", "problem")
    assert diagnosis.pending is None
    assert verdict.figures["died/gelu"] == pytest.approx(0.97)
    assert "consequence, not the cause" in verdict.message


def test_divergence_pending_spike_holds_dead_units_then_counts_them_in():
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"relu": "rectifier"}
    losses = [(s, 2.3 * math.exp(-s / 15) + 0.4) for s in range(1, 81)]
    assert review(diagnosis, 80, losses, {"relu": figures(dead=0.125, width=32)}, kinds) == []
    smoothed_rise(diagnosis, 81, 101, 2.5)
    # 12% -> 28%: past the threshold but no die-off: held while the spike waits
    fig = {"relu": figures(dead=0.28, width=32)}
    assert review(diagnosis, 100, [], fig, kinds) == [] and diagnosis.pending == 100
    smoothed_rise(diagnosis, 101, 121, 2.6)
    (verdict,) = review(diagnosis, 120, [], fig, kinds)  # still spiked: confirmed
    assert verdict.kind == "divergence" and verdict.figures["died/relu"] == pytest.approx(0.28)


def _dead_at_90(losses, later=()):
    """A BN CNN warming up (held out): learnt by step 50, a dense layer 16% -> 38% dead at
    step 90 (told as a problem), then the logs ``later`` (step, losses), then the loss at
    2.7 up to step 120; the verdicts of the log at 120."""
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"fc": "rectifier"}
    start = [(s, 2.3 * math.exp(-s / 8) + 0.46) for s in range(1, 51)]
    assert review(diagnosis, 50, start, {"fc": figures(dead=0.16, width=32)}, kinds) == []
    (dead,) = review(diagnosis, 90, losses, {"fc": figures(dead=0.38, width=32)}, kinds)
    assert (dead.kind, dead.severity) == ("dead_units", "problem")
    for step, more in later:
        assert review(diagnosis, step, more, {"fc": figures(dead=0.38, width=32)}, kinds) == []
    smoothed_rise(diagnosis, (later[-1][0] if later else 90) + 1, 121, 2.7)
    return review(diagnosis, 120, [], {"fc": figures(dead=0.6, width=32)}, kinds)


def test_divergence_takes_in_dead_units_told_while_the_loss_rose_to_it():
    # the loss 0.47 -> 0.70 over 40 steps before its spike: the units died on the way
    verdicts = _dead_at_90([(s, 0.47 + 0.23 * (s - 50) / 40) for s in range(51, 91)])
    assert said(verdicts) == [("divergence", "problem", "new"), ("dead_units", "note", "gone")]
    assert verdicts[1].figures["reported_step"] == 90 and 60 < verdicts[1].figures["rise_step"] < 90
    assert "part of the divergence told at step 120" in verdicts[1].message
    assert ", rising from step" in verdicts[1].message


def test_divergence_takes_in_dead_units_told_at_the_last_log_before_its_spike():
    # the warmup run's batch losses scattered 0.2-1.1 about 0.6: no clear rise before the
    # spike at step 103, the units told at step 90, the last log before it
    verdicts = _dead_at_90(flat(51, 91, 0.47))
    assert said(verdicts) == [("divergence", "problem", "new"), ("dead_units", "note", "gone")]
    assert "(the loss spiked at step " in verdicts[1].message
    assert "rising from" not in verdicts[1].message


def test_divergence_leaves_dead_units_told_before_the_last_log_before_it():
    # the units died at step 90 while the loss was at its low, a log before the spike
    verdicts = _dead_at_90(flat(51, 91, 0.47), later=[(100, flat(91, 101, 0.47))])
    assert said(verdicts) == [("divergence", "problem", "new")]


def test_divergence_die_off_is_a_rise_of_four_units_or_more():
    assert die_off([("se", 0.25, 0.0)], {"se": 8}) == {}  # 2 of 8 squeeze-excite units
    assert die_off([("conv", 0.25, 0.0)], {"conv": 16}) == {"conv": 0.25}
