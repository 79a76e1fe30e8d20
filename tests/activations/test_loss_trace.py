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
