"""The loss series' readings at each log."""

from lightning_cnnviz.activations.loss_levels import LossLevels


def test_loss_levels_a_start_a_little_above_chance_is_still_at_chance():
    # held out (hunt 96): a first median of 2.380 on 10 classes (3.3% above ln 10) read as
    # having left chance: the silent units of a net on data without signal blamed on the rate
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
