"""The BatchNorm train/eval mismatch rule on synthetic evaluations: parted, waiting, in noise."""

from dataclasses import replace

import pytest

from lightning_cnnviz.overfitting import bn_lag, bn_levels
from tests.overfitting.series import bn, first, probe_run


def test_rules_bn_mismatch_when_eval_and_batch_statistics_part():
    rows = [bn(0.9, 0.91), bn(0.75, 0.95), bn(0.58, 0.97)]
    verdict = first(bn_levels.bn_mismatch, probe_run(rows))
    assert (verdict.since.epoch, verdict.detected.epoch) == (1, 2)
    assert verdict.figures["gap_acc"] == pytest.approx(0.39)
    # the same accuracy at 5x the loss: running statistics lagging early, harmless
    loss_only = [bn(0.9, 0.9, 1.5, 0.3), bn(0.9, 0.9, 1.6, 0.3)]
    assert first(bn_levels.bn_mismatch, probe_run(loss_only)) is None


def test_rules_bn_mismatch_that_comes_back_twice_as_far_is_confirmed():
    # the small ResNet under SGD 0.1 (seed 2): parted at its first validation, within 5
    # points at its second, parted by 26 points (bar 12.5) at its third and last
    rows = [
        dict(bn(0.461, 0.625), bn_only=0.234, eval_only=0.07),
        dict(bn(0.758, 0.805), bn_only=0.086, eval_only=0.039),
        dict(bn(0.648, 0.906), bn_only=0.273, eval_only=0.015),
    ]
    verdict = first(bn_levels.bn_mismatch, probe_run(rows))
    assert (verdict.since.epoch, verdict.detected.epoch) == (0, 2)
    assert verdict.figures["gap_acc"] == pytest.approx(0.258)
    # back by less than twice its bar: still one parted evaluation, not confirmed
    weaker = [*rows[:2], dict(bn(0.75, 0.906), bn_only=0.2, eval_only=0.044)]
    assert bn_levels.parted(probe_run(weaker)[2]) is True
    assert first(bn_levels.bn_mismatch, probe_run(weaker)) is None
    # a strong parting with no earlier one in the last three evaluations waits
    alone = [rows[1], rows[1], rows[2]]
    assert first(bn_levels.bn_mismatch, probe_run(alone)) is None


def test_rules_bn_mismatch_closing_fast_waits_one_more_evaluation():
    # h_resnet18 SGD, validated every 15 steps: eval 51.8% / 76.5% vs batch statistics
    # 77.3% / 85.5% at steps 15 / 30 (the running statistics catching up), level at 45
    catching_up = [
        dict(bn(0.518, 0.773), bn_only=0.27, eval_only=0.015),
        dict(bn(0.765, 0.855), bn_only=0.1, eval_only=0.01),
    ]
    assert all(bn_levels.parted(e) for e in probe_run(catching_up))
    assert first(bn_levels.bn_mismatch, probe_run(catching_up)) is None
    assert first(bn_levels.bn_mismatch, probe_run([*catching_up, bn(0.86, 0.87)])) is None
    # still parted at the next evaluation: a mismatch that stays, reported then
    stays = [*catching_up, dict(bn(0.77, 0.86), bn_only=0.1, eval_only=0.01)]
    assert first(bn_levels.bn_mismatch, probe_run(stays)).detected.epoch == 2


def test_rules_bn_mismatch_waits_while_eval_mode_never_left_chance():
    # timm RepVGG-A0 under Adam, validated every 16 steps: eval mode at chance at steps 16
    # and 32 while batch statistics learnt, 74% vs 85% at step 63, level at step 79
    young = [
        dict(bn(0.102, 0.461), bn_only=0.36, eval_only=0.0, classes=10.0),
        dict(bn(0.102, 0.727), bn_only=0.625, eval_only=0.0, classes=10.0),
    ]
    assert all(bn_levels.parted(e) for e in probe_run(young))
    assert first(bn_levels.bn_mismatch, probe_run(young)) is None
    # then closing fast (62 -> 11 points): still waiting; level next
    closing = [*young, dict(bn(0.742, 0.852), bn_only=0.12, eval_only=0.01, classes=10.0)]
    assert bn_levels.parted(probe_run(closing)[2]) is True
    assert first(bn_levels.bn_mismatch, probe_run(closing)) is None
    # at chance in eval mode for a third evaluation: a mismatch that stays, reported
    stays = [*young, dict(bn(0.1, 0.8), bn_only=0.7, eval_only=0.0, classes=10.0)]
    assert first(bn_levels.bn_mismatch, probe_run(stays)).detected.epoch == 2
    # eval mode off chance at the confirming evaluation: reported there, as before
    learnt = [young[0], dict(bn(0.62, 0.805), bn_only=0.2, eval_only=0.015, classes=10.0)]
    assert first(bn_levels.bn_mismatch, probe_run(learnt)).detected.epoch == 1
    # no wait where the running statistics still hold much of their start: a momentum of
    # 0.01 (torchvision's MobileNetV3, hunt 20: eval mode at chance at steps 47, 94, 141;
    # recomputed statistics gave 76%) 50 steps in keeps 60% of it
    lagging = [dict(row, bn_momentum=0.01) for row in young]
    assert first(bn_levels.bn_mismatch, probe_run(lagging)).detected.epoch == 1
    usual = [dict(row, bn_momentum=0.1) for row in young]
    assert first(bn_levels.bn_mismatch, probe_run(usual)) is None
    frozen = [dict(row, bn_momentum=0.0) for row in young]  # never updated: held for good,
    assert first(bn_levels.bn_mismatch, probe_run(frozen)).detected.epoch == 0  # told at once
    # nor for a momentum of 0.01 later on, which averages over hundreds of steps (hunt 49:
    # MobileNetV3 validated every 125 steps, at chance in eval mode at 125, 250, 375; told
    # at 375)
    late = [replace(e, step=125 * (i + 1)) for i, e in enumerate(probe_run(lagging))]
    assert not bn_lag.init_held(late[1])
    assert first(bn_levels.bn_mismatch, late).detected.step == 250
    assert first(bn_levels.bn_mismatch, [replace(e, bn_momentum=0.1) for e in late]) is None


def test_rules_bn_mismatch_quiet_within_probe_noise():
    rows = [bn(0.96, 0.97), bn(0.95, 0.98), bn(0.97, 0.975), bn(0.9, 0.93)]
    assert first(bn_levels.bn_mismatch, probe_run(rows)) is None
    rows = [bn(0.97, 0.9), bn(0.98, 0.85)]  # eval better than batch statistics: no problem
    assert first(bn_levels.bn_mismatch, probe_run(rows)) is None


def test_rules_bn_mismatch_paired_error_sees_a_gap_two_independent_accuracies_miss():
    # 11 points apart on the same 128 images: 13% right with batch statistics only, 2% in
    # eval mode only. Independent errors put the bar at 18 points, the paired one at 10
    rows = [dict(bn(0.50, 0.61), bn_only=0.13, eval_only=0.02)] * 2
    assert bn_levels.parted(probe_run(rows)[0]) is True
    assert first(bn_levels.bn_mismatch, probe_run(rows)).detected.epoch == 1
    unpaired = [bn(0.50, 0.61)] * 2
    assert bn_levels.parted(probe_run(unpaired)[0]) is False
    # the same gap from many flips both ways is within the noise
    noisy = [dict(bn(0.50, 0.61), bn_only=0.40, eval_only=0.29)] * 2
    assert bn_levels.parted(probe_run(noisy)[0]) is False


def test_rules_bn_mismatch_in_the_first_half_is_a_note_unless_it_lasts():
    # hunt 83: 7 of 10 healthy BatchNorm runs (SGD, Adam, OneCycle, warm restarts) read eval
    # mode 15-40 points below batch statistics early on, level one or two validations later
    from lightning_cnnviz.overfitting.detector import Detector
    from lightning_cnnviz.overfitting.headlines import headline

    runs = probe_run([bn(0.75, 0.95), bn(0.58, 0.97), bn(0.6, 0.97)])
    evs = [replace(e, run_share=share) for e, share in zip(runs, (0.2, 0.4, 0.6), strict=True)]
    early = bn_levels.bn_mismatch(evs[:2])
    assert (early.severity, early.figures["early"]) == ("note", True)
    assert headline(early).endswith("a problem if the gap lasts past it.")
    assert bn_levels.bn_mismatch(evs).severity == "problem"  # past the first half
    lasting = [replace(e, bn_momentum=0.01) for e in evs[:2]]  # a lag the momentum keeps
    assert bn_levels.bn_mismatch(lasting).severity == "problem"
    reset = [replace(e, bn_initial=("bn1",)) for e in evs[:2]]  # statistics reset (hunt 85)
    assert bn_levels.bn_mismatch(reset).severity == "problem"
    # statistics frozen mid-run (hunt 86): nothing to catch up, told at the first parting
    level = replace(probe_run([bn(0.85, 0.9)])[0], run_share=0.3)
    frozen = [level, replace(evs[0], bn_momentum=0.0, run_share=0.4)]
    assert bn_levels.bn_mismatch(frozen[:1]) is None
    assert bn_levels.bn_mismatch(frozen).severity == "problem"
    assert bn_levels.bn_mismatch([level, replace(evs[0], run_share=0.4)]) is None  # waits
    detector = Detector(patience=2)
    told = [(c.change, c.verdict.severity) for e in evs for c in detector.update(e)]
    assert told == [("new", "note"), ("new", "problem")]
    # a run ending within its first half's note: told a problem at the end of fit
    detector = Detector(patience=2)
    for e in evs[:2]:
        detector.update(e)
    assert [(c.verdict.kind, c.verdict.severity) for c in detector.conclude()] == [
        ("bn_mismatch", "problem")
    ]


def test_rules_bn_mismatch_ends_once_no_batch_norm_trains_in_training_mode():
    # hunt 89: every BatchNorm put in eval mode by a callback after a parted evaluation;
    # the later ones read no batch-statistics pass (no BatchNorm layer in training mode)
    parted = probe_run([bn(0.75, 0.95), bn(0.78, 0.96)])
    assert bn_levels.bn_mismatch_at_end(parted) is not None
    frozen_since = probe_run([bn(0.75, 0.95), bn(0.78, 0.96), dict(probe_acc_val=0.93)])
    assert bn_levels.no_training_norms(frozen_since[-1])
    assert bn_levels.bn_mismatch_at_end(frozen_since) is None
    assert bn_levels.bn_mismatch(frozen_since) is None


def test_rules_bn_mismatch_at_the_default_momentum_is_a_note_in_its_first_steps_too():
    # hunt 90: validated every 6 steps, a healthy BatchNorm CNN parted at steps 7 and 13
    # (momentum 0.1 keeps 25% of its initial values at 13) and was warned a problem
    rows = probe_run([bn(0.75, 0.95), bn(0.7, 0.96)])
    evs = [replace(e, step=step, run_share=step / 120, bn_momentum=0.1)
           for e, step in zip(rows, (7, 13), strict=True)]  # fmt: skip
    assert bn_lag.init_held(evs[-1]) and not bn_lag.lags_long(evs[-1])
    assert bn_levels.bn_mismatch(evs).severity == "note"
    slow = [replace(e, bn_momentum=0.02) for e in evs]  # fades over 114 steps: a lasting lag
    assert bn_levels.bn_mismatch(slow).severity == "problem"


def test_rules_bn_mismatch_nan_statistics_of_a_model_nan_in_training_too_are_no_mismatch():
    # hunt 101: a diverged Conv1d+BN net, every training loss NaN from step 5, was told
    # "BatchNorm running statistics hold NaN/Inf ... while training, on batch statistics,
    # goes on" beside its divergence; a NaN written into one running_var alone is one
    nan = float("nan")
    diverged = probe_run([{**bn(nan, nan, nan, nan), "bn_nonfinite": ("net.1",)}])
    assert bn_levels.bn_mismatch(diverged) is None
    alone = probe_run([{**bn(nan, 0.95, nan, 0.2), "bn_nonfinite": ("net.1",)}])
    assert bn_levels.bn_mismatch(alone).figures["nonfinite"] == ["net.1"]
