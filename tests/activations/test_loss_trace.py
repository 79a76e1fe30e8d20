"""The training-loss series the activation diagnosis reads: progress since the start."""

import pytest

from lightning_cnnviz.activations.loss_trace import MIN_STEPS, progress


def test_loss_trace_progress_waits_for_steps_not_losses_under_accumulation():
    # 4 batches accumulated per optimizer step: 40 losses by step 10 are 10 updates, too
    # few to tell a stall from a slow start (held out: a healthy CNN down 2% by step 10)
    losses = [2.3 - 0.002 * i for i in range(4 * MIN_STEPS)]
    accumulated = [(i // 4, v) for i, v in enumerate(losses)]
    assert progress(accumulated[: 4 * (MIN_STEPS - 1)]) is None
    assert progress(accumulated) is not None  # MIN_STEPS steps: read
    one_per_step = list(enumerate(losses[: 4 * (MIN_STEPS - 1)]))  # 76 steps: read
    start, now = losses[2], losses[4 * (MIN_STEPS - 1) - 3]  # medians of the first and last 5
    assert progress(one_per_step) == pytest.approx(1 - now / start)


def test_loss_levels_a_start_a_little_above_chance_is_still_at_chance():
    # held out (hunt 96): a first median of 2.380 on 10 classes (3.3% above ln 10) read as
    # having left chance: the silent units of a net on data without signal blamed on the rate
    from lightning_cnnviz.activations.loss_trace import LossLevels

    start = [(s, 2.38) for s in range(5)]
    flat = [(s, 2.305) for s in range(5, 25)]
    assert LossLevels().at_chance(start + flat, classes=10)
    assert not LossLevels().at_chance([(s, 2.75) for s in range(5)] + flat, classes=10)
    wander = start + flat[:5] + [(s, 2.6) for s in range(10, 25)]  # later: not the start
    assert not LossLevels().at_chance(wander, classes=10)
    levels, series = LossLevels(), start + flat  # read log by log, the start once
    assert not levels.at_chance(series[:7], classes=10)  # too few losses yet
    assert levels.at_chance(series, classes=10)
    levels = LossLevels()  # a first log at step 2 (hunt 97): the start read at the next
    assert not levels.at_chance(series[:3], classes=10)
    assert levels.at_chance(series, classes=10)


def test_loss_trace_progress_after_a_blow_up_of_the_first_steps_is_from_the_first_loss():
    # held-out hunt 118 (seed 1): 2.33 -> 135 at step 1, 15.5 by step 10, 1.97 at the end;
    # the dead-units note said "the loss fell 97% since the first step" (from the spike)
    series = [(0, 2.33), (1, 135.0), (2, 61.0), (3, 40.0), (4, 22.0)]
    series += [(s, 15.5) for s in range(5, 11)] + [(s, 1.97) for s in range(11, 40)]
    assert progress(series) == pytest.approx(1 - 1.97 / 2.33)  # -15%, not -97%
