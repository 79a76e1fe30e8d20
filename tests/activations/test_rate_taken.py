"""A rate the run took before a blow-up is not its cause; one it rose into still is."""

import math

from tests.activations.series import collapsed

LOGS = (60, 80, 100, 120, 140)


def _blown(s):
    """One batch's blow-up at step 101 (0.4 -> 16, 19), then the loss at chance."""
    return {101: 16.1, 102: 19.9}.get(s, math.log(10) * (1 + 0.005 * (-1) ** s))


def _climbing(s):
    """A loss climbing from step 101 as the rate rises past what the model takes."""
    return 0.4 * 1.3 ** (s - 100)


def test_rate_taken_a_blow_up_at_a_rate_the_loss_held_at_is_not_the_rise():
    # held-out hunt 126: a warm-up's loss falling at 0.038, one batch of inputs x30 at step
    # 50 (0.41 -> 16.1, then chance): told "the learning rate rose from 0.00391 to 0.0477
    # ... the rate it reached is too high"; the same batch at a fixed rate: the batches
    (warmup,) = collapsed(_blown, (60, 120, 140), rate=lambda s: 5e-4 * s)[:1]
    assert "rose from" not in warmup.message and "rate_rise" not in warmup.figures
    assert "at an unchanged learning rate: the training batches may no longer" in warmup.message
    # an SGDR restart to 0.05 at step 92 trained at for 9 steps, the blow-up at 101: told
    # "the learning rate jumped from 0.002 (step 80) to 0.05 (step 92) ... too high"
    sgdr = {"rate": lambda s: 0.045 if s > 100 else 0.05 if s < 40 else 0.002}
    restart = {**sgdr, "lr_peak": lambda s: (92, 0.05) if s == 120 else None}
    (restarted,) = collapsed(_blown, (80, 120, 140), **restart)[:1]
    assert "jumped" not in restarted.message and "rate_rise" not in restarted.figures
    assert "the training batches may no longer carry the label" in restarted.message


def test_rate_taken_a_rate_the_loss_climbed_into_or_blew_up_at_once_is_still_the_rise():
    # a warm-up past what the model takes: the loss climbs as the rate rises
    (climbed,) = collapsed(_climbing, LOGS, rate=lambda s: 5e-4 * s)[:1]
    assert "The learning rate rose from 0.01 to" in climbed.message
    assert climbed.figures["rate_rise"] >= 3
    # a warm restart blowing up at once: two steps at 0.05 before it
    sgdr = {"rate": lambda s: 0.045 if s > 100 else 0.05 if s < 40 else 0.002}
    restart = {**sgdr, "lr_peak": lambda s: (99, 0.05) if s == 120 else None}
    (restarted,) = collapsed(_blown, (80, 120, 140), **restart)[:1]
    assert "The learning rate jumped from 0.002 (step 80) to 0.05 (step 99)" in restarted.message
    assert restarted.figures["rate_rise"] == 25.0
