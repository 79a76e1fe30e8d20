"""The not-learning rule on synthetic probes: at chance from the start or after a collapse."""

import math
from dataclasses import replace

import pytest

from lightning_cnnviz.overfitting import gap, levels
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.remedies import remedies
from tests.overfitting.series import first, probe, probe_run


def test_rules_not_learning_from_the_start_and_after_a_collapse():
    stuck = probe_run([probe(0.1), probe(0.12), probe(0.09)])
    verdict = first(levels.not_learning, stuck)
    assert verdict.detected.epoch == 1 and verdict.since.epoch == 0
    assert verdict.figures["from_start"] is True
    assert verdict.figures["chance_loss"] == pytest.approx(math.log(10))
    collapse = probe_run([probe(0.9, 0.3), probe(0.95, 0.2), probe(0.1), probe(0.1)])
    verdict = first(levels.not_learning, collapse)
    assert (verdict.since.epoch, verdict.detected.epoch) == (2, 3)
    assert verdict.figures["from_start"] is False and verdict.figures["peak_acc_before"] == 0.95


def test_rules_not_learning_reads_the_logged_accuracy_over_the_whole_val_set():
    # hunt 98: a slow 3-class learner, 40% -> 45% logged over 1000 val signals (chance
    # 33.3%, one error 1.5 points), its 128-image probe at 39.8% inside the 45.8% band:
    # "at chance" for ten validations
    def row(acc, logged, images=1000.0):
        return probe(acc, 1.083, classes=3, val_acc=logged, val_images=images, val_major=0.34)

    slow = probe_run([row(0.398, 0.403), row(0.43, 0.425), row(0.40, 0.451)])
    assert not [levels.stuck(e) for e in slow if levels.stuck(e)]
    verdict = first(levels.not_learning, slow)  # hardly moved: "barely", not "at chance"
    assert verdict.figures["barely"] is True
    # the same accuracies over 150 val images are within chance's error: at chance
    few = probe_run([row(0.398, 0.403, 150.0), row(0.43, 0.425, 150.0), row(0.40, 0.42, 150.0)])
    assert all(levels.stuck(e) for e in few)
    assert first(levels.not_learning, few).figures["barely"] is False
    # a logged accuracy far from the probe's is not this model's on these labels (top-5)
    top5 = probe_run([row(0.35, 0.92), row(0.34, 0.93), row(0.36, 0.93)])
    assert all(levels.stuck(e) for e in top5)
    # hunt 99: one class answered on a 60/40 val set of 3000 (61% logged, a balanced probe
    # at 50%) is the val labels' commonest share, not past chance
    major = probe(0.5, 0.70, classes=2, val_acc=0.61, val_images=3000.0, val_major=0.613)
    assert levels.stuck(Evaluation(step=50, epoch=1, **major))
    unknown = probe(0.398, 1.083, classes=3, val_acc=0.45, val_images=1000.0)  # shares unread
    assert levels.stuck(Evaluation(step=50, epoch=1, **unknown))


def test_rules_not_learning_near_uniform_outputs_never_learnt_by_accuracy_alone():
    # hunt 98: a slow binary learner read 78% once at confidence 0.51 (its loss 0.99 ln 2),
    # then the majority share while its loss kept falling: "not learning after a collapse"
    near = probe(0.781, 0.686, classes=2, conf_val=0.51)
    evs = probe_run([near, probe(0.539, 0.684, classes=2, conf_val=0.51),
                     probe(0.539, 0.684, classes=2, conf_val=0.51)])  # fmt: skip
    verdict = first(levels.not_learning, evs)
    assert verdict is None or verdict.figures["from_start"] is True
    confident = probe(0.781, 0.686, classes=2, conf_val=0.8)  # its outputs did move
    evs[0] = Evaluation(step=25, epoch=0, **confident)
    assert first(levels.not_learning, evs).figures["from_start"] is False
    # hunt 99: a bounded head (tanh(logits) / 15, confidence 0.19 of 10 classes) at 70%
    # for validations in a row, then labels shuffled: a collapse, not "from the start"
    bounded = [probe(a, 2.22, conf_val=0.19) for a in (0.70, 0.72, 0.75, 0.1, 0.1)]
    verdict = first(levels.not_learning, probe_run(bounded))
    assert verdict.figures["from_start"] is False and verdict.figures["peak_acc_before"] == 0.75


def test_rules_not_learning_a_noisy_first_validation_is_no_collapse():
    # setups hunt 27: validated every 3 steps, 18.8% (10 classes, 128 images: the chance
    # band reaches 18.0%) at step 3, then chance at steps 6 and 9 of a run that learnt:
    # "not learning after a collapse" at step 6, without the first steps' guard
    rows = [(3, 0.188), (6, 0.1), (9, 0.11), (60, 0.1), (63, 0.1)]
    evs = [Evaluation(step=s, epoch=0, **probe(acc)) for s, acc in rows]
    verdict = first(levels.not_learning, evs)
    assert verdict.detected.step == 60 and verdict.figures["from_start"] is True
    assert verdict.figures["peak_acc_before"] is None
    # learnt clearly first (6 standard errors past chance): a collapse, told at once
    evs[0] = Evaluation(step=3, epoch=0, **probe(0.27))
    verdict = first(levels.not_learning, evs)
    assert (verdict.detected.step, verdict.figures["from_start"]) == (9, False)


def test_rules_not_learning_waits_for_a_warm_up_from_the_start_only():
    # held out: at chance at steps 11 and 22 of a 40-step warm-up (lr 0.015, 0.029 of 0.05)
    warm = probe_run([probe(0.1, lr=0.015), probe(0.1, lr=0.029), probe(0.1, lr=0.05),
                      probe(0.1, lr=0.05)])  # fmt: skip
    verdict = first(levels.not_learning, warm)
    assert (verdict.since.epoch, verdict.detected.epoch) == (0, 3)  # once the rate stops rising
    # validated every 12 steps (held out: 12-step epochs under SGD): from step 40 on
    frequent = [Evaluation(step=12 * (i + 1), epoch=i, **probe(0.1, lr=0.02)) for i in range(6)]
    assert first(levels.not_learning, frequent).detected.step == 48
    nan = [Evaluation(step=12 * (i + 1), epoch=i, **probe(0.1, math.nan)) for i in range(3)]
    assert first(levels.not_learning, nan).detected.step == 24  # NaN outputs: no plateau
    # a collapse is told while the rate rises (a cyclic schedule, a restart)
    collapse = probe_run([probe(0.9, 0.3, lr=0.01), probe(0.1, lr=0.02), probe(0.1, lr=0.03)])
    assert first(levels.not_learning, collapse).detected.epoch == 2


def test_rules_not_learning_stops_waiting_for_a_warm_up_that_outlasts_the_run():
    # f_warmup_forever s1 (hunt 15): LinearLR(start_factor=1e-4, total_iters=100000) per
    # batch in a 282-step run, lr 1e-3 set; validations at steps 94 and 188
    rows = [(94, 1.0e-6, 1 / 3), (188, 1.9e-6, 2 / 3)]
    evs = [Evaluation(step=s, epoch=i, **probe(0.09, lr=lr, lr_initial=1e-3, run_share=share))
           for i, (s, lr, share) in enumerate(rows)]  # fmt: skip
    verdict = first(levels.not_learning, [Evaluation(step=0, epoch=0, lr=1e-7), *evs])
    assert verdict.detected.step == 188 and verdict.figures["warmup_outlasts"]
    text = headline(verdict)
    assert "The learning rate is 1.9e-06, 0.2% of the 0.001 its warm-up aims at, and still" in text
    assert remedies(verdict)[0].startswith("**Shorten the warm-up**")
    # the same rates 100x higher in a 10x longer run: a warm-up on its way, waited for
    short = [replace(e, lr=100 * e.lr, run_share=e.run_share / 10) for e in evs]
    assert first(levels.not_learning, [Evaluation(step=0, epoch=0, lr=1e-5), *short]) is None


def test_rules_not_learning_counts_non_finite_outputs():
    nan = probe_run([probe(0.8, 0.5), probe(0.1, math.nan), probe(0.1, math.nan)])
    verdict = first(levels.not_learning, nan)
    assert verdict.figures["non_finite"] is True and verdict.since.epoch == 1


def test_rules_not_learning_quiet_on_learning_runs_and_tiny_probes():
    learning = probe_run([probe(0.2, 2.0), probe(0.5, 1.2), probe(0.8, 0.6)])
    assert first(levels.not_learning, learning) is None
    one_slow_start = probe_run([probe(0.12), probe(0.4, 1.6), probe(0.1, 2.2), probe(0.6, 1.0)])
    assert first(levels.not_learning, one_slow_start) is None  # never two in a row
    tiny = probe_run([probe(0.5, classes=2, size=4)] * 4)  # 4 images cannot tell chance
    assert first(levels.not_learning, tiny) is None


def test_rules_not_learning_quiet_while_the_probe_loss_falls_below_chance():
    # most val images taken for the training set's commonest class, the loss already below
    # ln 10 = 2.30: no image-blind prediction scores that on a balanced probe
    prior_first = probe_run([probe(0.097, 2.59), probe(0.126, 2.15), probe(0.59, 1.41)])
    assert first(levels.not_learning, prior_first) is None
    flat = probe_run([probe(0.097, 2.59), probe(0.126, 2.25)])  # within 5% of ln 10
    assert first(levels.not_learning, flat) is not None


def test_rules_not_learning_waits_while_a_probe_loss_below_chance_keeps_falling():
    # a 2-class task in its slow start: 59% (chance band 63% on 128 images), the loss
    # 0.688 -> 0.675 (ln 2 = 0.693): learning under way, not flat
    slow = probe_run([probe(0.55, 0.688, classes=2), probe(0.59, 0.675, classes=2)])
    assert first(levels.not_learning, slow) is None
    # flat below chance (SGD at 1e-5 on 10 classes: 2.295 -> 2.294): not learning
    flat = probe_run([probe(0.117, 2.295), probe(0.117, 2.294)])
    assert first(levels.not_learning, flat).detected.epoch == 1
    # the fall stops: told at the evaluation where it is flat
    stalls = probe_run([*(probe(0.55, v, classes=2) for v in (0.688, 0.675, 0.674))])
    assert first(levels.not_learning, stalls).detected.epoch == 2


def test_rules_not_learning_judges_a_fall_by_the_steps_between_evaluations():
    # hunt 54: validated every 10 steps, a CNN in its flat start at chance on 4 classes,
    # its probe loss 0.4-0.6% of ln 4 lower at each: told at step 40, 100% by step 70
    losses = (1.393, 1.384, 1.379, 1.371, 1.354)
    rows = [probe(0.25, v, classes=4) for v in losses]
    dense = [Evaluation(step=10 * (i + 1), epoch=0, **row) for i, row in enumerate(rows)]
    assert first(levels.not_learning, dense) is None
    # as slow a fall between validations 50 steps apart: flat
    sparse = [Evaluation(step=50 * (i + 1), epoch=i, **row) for i, row in enumerate(rows)]
    assert first(levels.not_learning, sparse).detected.step == 100
    # SGD at 1e-5, validated as often: flat
    slowest = [probe(0.117, v) for v in (2.296, 2.2955, 2.295, 2.2945, 2.294)]
    flat = [Evaluation(step=10 * (i + 1), epoch=0, **row) for i, row in enumerate(slowest)]
    assert first(levels.not_learning, flat).detected.step == 40


def test_rules_not_learning_at_chance_in_a_runs_first_quarter_is_a_note_first():
    # hunt 56: five healthy runs validated every 10-20 steps sat at chance for 40-120 steps
    # of 300-500 and learnt; each was told "not learning" as a problem first
    rows = [probe(0.1, 2.3026, run_share=s / 400) for s in (40, 80, 120)]
    evs = [Evaluation(step=40 * (i + 1), epoch=i, **row) for i, row in enumerate(rows)]
    note = levels.not_learning(evs[:2])
    assert (note.severity, note.figures["early"]) == ("note", True)
    assert headline(note).endswith("a problem if it still does past a quarter of the run.")
    assert headline(note).startswith("Not learning since")
    assert levels.not_learning(evs).severity == "problem"  # past a quarter: told
    # a loss climbing above its first value is no flat start: a problem at once
    climbing = [replace(e, run_share=0.1, returned_loss=11.0, first_loss=7.5, probe_acc_val=0.2,
                        probe_loss_val=7.2) for e in evs[:2]]  # fmt: skip
    assert levels.not_learning(climbing).severity == "problem"
    # hunt 68: Adam at 1e-6, each step moving the weights 7e-6 of their size: no flat
    # start ends at that pace, a problem at once (told at a quarter of 800 steps before)
    held = [replace(e, lr=1e-6, eps=1e-8, update_ratio=7e-6) for e in evs[:2]]
    verdict = levels.not_learning(held)
    assert verdict.severity == "problem" and "has been 1e-06 at most" in headline(verdict)
    # the rate as small with steps of a healthy size (1e-3): the flat start's note
    assert levels.not_learning([replace(e, update_ratio=1e-3) for e in held]).severity == "note"


def test_rules_not_learning_a_run_ending_within_its_flat_start_note_ends_with_a_problem():
    from lightning_cnnviz.overfitting.detector import Detector

    # a run of unknown length (no planned steps) ending at step 120, still at chance: the
    # note of its first 200 steps is all it said; at the end of fit, a problem
    detector = Detector(patience=2)
    for step in (40, 80, 120):
        detector.update(Evaluation(step=step, epoch=step // 40, **probe(0.1, 2.3026)))
    assert detector.reported["not_learning"].severity == "note"
    (end,) = detector.conclude()
    assert (end.verdict.kind, end.verdict.severity) == ("not_learning", "problem")
    assert end.verdict.figures["at_end"] and not headline(end.verdict).endswith("the run.")


def test_rules_not_learning_leaves_training_images_learnt_to_the_gap_rule():
    # coloured shapes whose cue is on training images only (4 classes, held out): train
    # accuracy 99.9% while the val probe sits in the chance band (35.9% <= 36.4%)
    rows = [probe(0.359, 1.5, classes=4) | {"train_acc": t} for t in (0.97, 0.998, 0.999)]
    evs = probe_run(rows)
    assert first(levels.not_learning, evs) is None
    verdict = first(gap.generalisation_gap, evs)
    assert (verdict.since.epoch, verdict.detected.epoch) == (0, 1)
    assert verdict.figures["val_at_chance"] is True
    # training images at chance too: not learning, and no gap
    at_chance = probe_run([probe(0.26, classes=4) | {"train_acc": 0.27}] * 3)
    assert first(levels.not_learning, at_chance).detected.epoch == 1
    assert first(gap.generalisation_gap, at_chance) is None


def test_rules_not_learning_a_run_shorter_than_the_first_steps_waits_half_of_it():
    # held out: whole-set batches, SGD 0.01: 40 steps in 40 epochs, the val loss at 96% of
    # ln 10 at the end and "no problems found" (the 40-step wait was never over)
    def run(total):
        return [Evaluation(step=s, epoch=s - 1, run_share=s / total,
                           **probe(0.15 + 0.004 * s, 2.30 - 0.0015 * s, returned_loss=2.3))
                for s in range(1, 41)]  # fmt: skip

    verdict = first(levels.not_learning, run(40))
    assert verdict.detected.step == 20 and verdict.figures["barely"] is True  # half the run
    # a run planned long: the first 40 steps are its start, too early to call
    assert first(levels.not_learning, run(4000)) is None


def test_rules_not_learning_with_a_loss_near_zero_says_it_ignores_the_labels():
    # held out (hunt 14): trained on its own argmax, the training loss 0.000 at 9.5% train
    # accuracy: "not learning" with no cause
    row = dict(returned_loss=0.0004, probe_acc_train=0.095)
    verdict = first(levels.not_learning, probe_run([probe(0.1, 41.0, **row)] * 3))
    assert "The loss `training_step` returns is 0.0004, far below its chance" in headline(verdict)
    assert remedies(verdict)[0].startswith("**Check what the loss compares the outputs with**")
    plain = first(levels.not_learning, probe_run([probe(0.1, returned_loss=2.3)] * 3))
    assert "does not measure the labels" not in headline(plain)


def test_rules_not_learning_barely_off_chance_with_the_loss_at_chance_level():
    # held out: SGD 1e-3 without momentum, 23-32% val after 188 steps (79% at 1e-2), the
    # training loss 2.289 -> 2.265 (ln 10 = 2.303): "no problems found" on 3 of 3 seeds
    slow = probe_run([probe(0.2, 2.28, returned_loss=2.29), probe(0.28, 2.27, returned_loss=2.28),
                      probe(0.32, 2.265, returned_loss=2.27)])  # fmt: skip
    verdict = first(levels.not_learning, slow)
    # the first evaluation (step 25) too early to tell: from the start all the same
    assert verdict.detected.epoch == 2 and verdict.figures["barely"] is True
    text = headline(verdict)
    assert text.startswith("Barely learning since epoch 1 (step 50) (from the start): after 75")
    assert "the model has hardly moved from its initialisation" in text
    assert remedies(verdict)[0].startswith("**Raise the learning rate** (10x")
    # the loss well below chance level, or the accuracy past half: learning, however slow
    moving = probe_run([probe(0.3, 2.0), probe(0.35, 1.9)])
    assert first(levels.not_learning, moving) is None
    assert first(levels.not_learning, probe_run([probe(0.55, 2.25), probe(0.6, 2.24)])) is None
    # hunt 19: a timm TinyNet from scratch, its training loss down from 4.74 (2.1 ln 10) to
    # the chance level at 41% accuracy: moving, not "hardly moved from its initialisation"
    rows = [(0.3, 2.24, 2.9), (0.41, 2.25, 2.24), (0.4, 2.24, 2.25)]
    down = probe_run([probe(a, v, returned_loss=r, first_loss=4.74) for a, v, r in rows])
    assert first(levels.not_learning, down) is None
    at_start = probe_run([probe(a, v, returned_loss=r, first_loss=2.31) for a, v, r in rows])
    assert first(levels.not_learning, at_start).figures["barely"] is True  # it has not moved


def test_rules_not_learning_names_a_rate_small_all_run():
    # hunt 36: OneCycleLR with `max_lr=1e-5` under Adam: "hardly moved", no cause named
    rates = {"lr": 8e-6, "lr_initial": 4e-7, "lr_peak": 1e-5, "eps": 1e-8}  # Adam's
    rates["update_ratio"] = 3e-5  # what its steps moved, read at the step
    rows = [Evaluation(step=32 * (i + 1), epoch=i, **probe(0.12, **rates)) for i in range(3)]
    text = headline(first(levels.not_learning, rows))
    assert "The learning rate has been 1e-05 at most (the one-cycle schedule's `max_lr`)" in text
    usual = [replace(e, lr=1e-3, lr_initial=1e-3, lr_peak=None) for e in rows]
    assert "has been" not in headline(first(levels.not_learning, usual))
    # hunt 38: plain SGD at 3e-4 (a step of 3e-4 x the gradient); with momentum 0.9 it
    # steps 10x that, and 0.01 with it is no small rate
    sgd = [replace(e, lr=3e-4, lr_initial=3e-4, lr_peak=None, eps=None) for e in rows]
    assert "has been 0.0003 at most" in headline(first(levels.not_learning, sgd))
    fast = [replace(e, lr=0.01, lr_initial=0.01, momentum=0.9) for e in sgd]
    assert "has been" not in headline(first(levels.not_learning, fast))
    # hunt 39: 1e-4 with momentum 0.9 (a step of 1e-3, 1.0000000000000002e-3 in floats)
    # and 2e-4 with 0.9 sat at chance, the rate unnamed
    for lr in (1e-4, 2e-4):
        slow = [replace(e, lr=lr, lr_initial=lr, momentum=0.9) for e in sgd]
        assert f"has been {lr:.3g} at most" in headline(first(levels.not_learning, slow))
    usual = [replace(e, lr=1e-3, lr_initial=1e-3, momentum=0.9) for e in sgd]
    assert "has been" not in headline(first(levels.not_learning, usual))
    # hunt 40: dampening 0.9 leaves 90% of each gradient out of the momentum: a step of 5e-4
    damped = [replace(e, lr=5e-4, lr_initial=5e-4, momentum=0.9, dampening=0.9) for e in sgd]
    assert "has been 0.0005 at most" in headline(first(levels.not_learning, damped))


def test_rules_not_learning_names_a_tiny_clip_and_a_large_eps():
    # hunt 41: `gradient_clip_val=1e-4` under SGD, and Adam with `eps=1.0`: no cause
    rows = [
        Evaluation(
            step=32 * (i + 1), epoch=i, **probe(0.12, lr=0.05, lr_initial=0.05, update_ratio=4e-6)
        )
        for i in range(3)
    ]
    clipped = [replace(e, grad_clip=1e-4) for e in rows]
    assert "Gradients are clipped to 0.0001" in headline(first(levels.not_learning, clipped))
    wide = [replace(e, lr=1e-3, lr_initial=1e-3, eps=1.0) for e in rows]
    assert "The optimiser's `eps` is 1:" in headline(first(levels.not_learning, wide))
    usual = [replace(e, grad_clip=1.0, eps=1e-8, lr=1e-3, lr_initial=1e-3) for e in rows]
    text = headline(first(levels.not_learning, usual))
    assert "clipped" not in text and "`eps`" not in text


def test_rules_not_learning_names_no_setting_at_chance_where_the_update_is_unknown():
    # setups hunt 45: an iterable loader of unknown length (no step known to come before a
    # validation) under plain SGD 3e-3, permuted labels: "try the rate 10x higher"
    rows = [Evaluation(step=32 * (i + 1), epoch=i, **probe(0.12, lr=3e-3, lr_initial=3e-3))
            for i in range(3)]  # fmt: skip
    assert "has been" not in headline(first(levels.not_learning, rows))
    slowly = [replace(e, probe_acc_val=0.21, probe_loss_val=2.28) for e in rows]
    assert "has been 0.003 at most" in headline(first(levels.not_learning, slowly))


def test_rules_not_learning_names_a_setting_only_where_the_updates_were_small():
    # hunt 42: permuted labels under Adam `eps=1e-2` and under SGD 3e-3 on a BN net (both
    # train to 93% with the right labels) were told "the steps are tiny" and "try the rate
    # 10x higher": their updates read 6e-4 to 2e-3 of the weights, a stuck run's 3e-5
    rows = [Evaluation(step=32 * (i + 1), epoch=i, **probe(0.12, lr=1e-3, lr_initial=1e-3))
            for i in range(3)]  # fmt: skip
    for setting, said in (({"eps": 1e-2}, "`eps`"), ({"lr": 3e-4, "lr_initial": 3e-4},
                          "has been"), ({"grad_clip": 1e-4, "lr": 0.05, "lr_initial": 0.05},
                          "clipped")):  # fmt: skip
        stuck = [replace(e, **setting, update_ratio=3e-5) for e in rows]
        text = headline(first(levels.not_learning, stuck))
        assert said in text and "(its last update moved the weights 3e-05 of their size)" in text
        moving = [replace(e, **setting, update_ratio=1.5e-3) for e in rows]
        assert said not in headline(first(levels.not_learning, moving)), setting
        # hunt 44: permuted labels cancel in SGD's momentum (1.4e-4): at chance, only a
        # tiny update is the setting's doing; learning the right way slowly, a small one
        cancelled = [replace(e, **setting, update_ratio=1.4e-4) for e in rows]
        assert said not in headline(first(levels.not_learning, cancelled)), setting
        slowly = [replace(e, **setting, update_ratio=1.4e-4, probe_acc_val=0.21,
                          probe_loss_val=2.28) for e in rows]  # fmt: skip
        assert said in headline(first(levels.not_learning, slowly)), setting


def test_rules_not_learning_names_gradient_hooks():
    # hunt 40: a hook negating fc1's gradient, told "not learning" with no cause
    rows = [Evaluation(step=32 * (i + 1), epoch=i, **probe(0.12, lr=0.05, lr_initial=0.05))
            for i in range(3)]  # fmt: skip
    hooked = [replace(e, hooked=("fc1",)) for e in rows]
    text = headline(first(levels.not_learning, hooked))
    assert "Also: the gradients of `fc1` pass through a hook" in text
    assert "pass through a hook" not in headline(first(levels.not_learning, rows))


def test_rules_not_learning_barely_ended_says_what_moved():
    # hunt 99: "the val probe loss 0.6923 is below 95.0% of its chance level" (0.658),
    # where the training loss had come down and the val probe's had not
    from lightning_cnnviz.overfitting.learning_words import headline as learning_headline
    from lightning_cnnviz.overfitting.verdict import Verdict

    def ended(**row):
        now = Evaluation(step=200, epoch=4, **probe(classes=2, **row))
        return learning_headline(Verdict("not_learning", now, now, None, {"barely": True},
                                         "note"))  # fmt: skip

    text = ended(acc=0.65, loss=0.6923, returned_loss=0.41)
    assert "the loss `training_step` returns, 0.41, is below 95.0% of its chance level" in text
    assert "while the val probe's is 0.6923" in text
    assert "val probe loss 0.6 is below" in ended(acc=0.7, loss=0.6, returned_loss=0.5)
    assert "val accuracy 80.0% is past 72.0%" in ended(acc=0.8, loss=0.68)
    # hunt 100: a training loss at 99.7% of ln 6 was said "below 95.0% of its chance level"
    six = Evaluation(step=200, epoch=4, **probe(0.4, 1.75, classes=6, returned_loss=1.787,
                                                first_loss=1.79, conf_val=0.5))  # fmt: skip
    text = learning_headline(Verdict("not_learning", six, six, None, {"barely": True}, "note"))
    assert "1.787, is below" not in text and "95.0%" not in text, text


def test_rules_not_learning_a_smoothed_head_past_the_bar_in_its_logged_accuracy_is_not_barely():
    # hunt 100: labels smoothed at 0.9 keep the outputs near uniform; the probe at 50% of 6
    # classes, 56% logged over 1000 images: "barely learning", its collapse dated before it
    row = dict(classes=6, conf_val=0.2, val_images=1000.0, val_major=0.17)
    smoothed = Evaluation(step=186, epoch=3, **probe(0.5, 1.74, val_acc=0.562, **row))
    assert levels.barely(smoothed) is False
    assert levels.barely(replace(smoothed, val_acc=0.5)) is True
