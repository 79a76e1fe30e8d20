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


def test_loss_trace_progress_after_a_blow_up_of_the_first_steps_is_from_the_first_loss():
    # held-out hunt 118 (seed 1): 2.33 -> 135 at step 1, 15.5 by step 10, 1.97 at the end;
    # the dead-units note said "the loss fell 97% since the first step" (from the spike)
    series = [(0, 2.33), (1, 135.0), (2, 61.0), (3, 40.0), (4, 22.0)]
    series += [(s, 15.5) for s in range(5, 11)] + [(s, 1.97) for s in range(11, 40)]
    assert progress(series) == pytest.approx(1 - 1.97 / 2.33)  # -15%, not -97%
