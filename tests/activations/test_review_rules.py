"""The review of units on synthetic figures: dead and dormant units, and what they point at."""

import math

import pytest
import torch

from lightning_cnnviz.activations.dead_rules import dead_severity
from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.divergence import jump_to_chance
from tests.activations.series import figures, healthy_losses, info, review


def test_dead_severity_reference_head_is_a_note():
    # measured: reference MNISTClassifier, Adam 1e-3, relu3 32-34% dead while the loss falls
    assert dead_severity(0.34, None, 0.45) == "note"
    assert dead_severity(0.34, 0.05, 0.45) == "note"  # a rise, with learning going well
    assert dead_severity(0.34, 0.05, 0.25) == "problem"  # a rise, with learning slow
    assert dead_severity(0.28, None, 0.03) == "problem"  # learning stalled
    assert dead_severity(0.80, None, 0.90) == "problem"  # most of the layer
    assert dead_severity(0.30, None, None) == "note"  # too early to tell


def test_dead_severity_loss_at_a_new_low_is_a_note():
    # measured: a BN CNN under SGD 0.1 with warmup, its dense head 16% -> 45% dead at step 40
    # (progress 0.79), and a slow-starting Conv3d net 23% -> 64% (progress 0.17), the loss
    # falling 80% and 14% since the last log; both end at 97-99% val accuracy
    assert dead_severity(0.45, 0.16, 0.79) == "problem"  # a late collapse, loss unknown
    assert dead_severity(0.45, 0.16, 0.79, falling=True) == "note"
    assert dead_severity(0.64, 0.23, 0.17, falling=True) == "note"
    assert dead_severity(0.28, None, 0.03, falling=True) == "note"  # not stalled: falling
    # most of the layer, while the loss falls: the dense head of a BN CNN under SGD 0.1
    # with warm restarts, 0% -> 75% at step 20 on its way to 98% val accuracy (held out)
    assert dead_severity(0.75, 0.0, 0.46, falling=True) == "note"
    assert dead_severity(0.75, 0.0, 0.46) == "problem"  # the same share, the loss not falling


def test_review_leaky_units_are_dormant_never_dead():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    figs = {"gelu": figures(dead=0.5, dormant=0.4), "relu": figures()}
    (verdict,) = review(
        diagnosis, 25, healthy_losses(25), figs, {"gelu": "leaky", "relu": "rectifier"}
    )
    assert (verdict.kind, verdict.severity) == ("dormant_units", "note")
    assert "`gelu`: 40% of units below 0.025x" in verdict.message
    assert "dead" not in verdict.message.split("not dead")[0]


def test_review_dead_units_with_a_divergence_are_part_of_it():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    losses = [(1, 2.3), (2, 584.0), (3, 48.9)] + [(s, 2.3) for s in range(4, 26)]
    figs = {"relu2": figures(dead=1.0), "relu3": figures(dead=0.95)}
    (verdict,) = review(diagnosis, 25, losses, figs, {"relu2": "rectifier", "relu3": "leaky"})
    assert verdict.kind == "divergence" and verdict.figures["spike_step"] == 2
    assert verdict.figures["died/relu2"] == 1.0 and "LeakyReLU" not in verdict.message
    assert "consequence, not the cause" in verdict.message
    # later logs: the dead layers and the gradients are not reported on their own
    later = review(diagnosis, 50, [(s, 2.3) for s in range(26, 51)], figs, {"relu2": "rectifier"},
                   [("a", 1e-12), ("b", 1e-9), ("c", 1e-2)])  # fmt: skip
    assert later == []


def test_review_nonfinite_loss_names_first_step_parameter_and_layer():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    losses = [(s, 2.3 - 0.01 * s) for s in range(1, 12)] + [(12, float("nan")), (13, float("nan"))]
    figs = {"relu1": figures(nonfinite=8.0), "relu2": figures(nonfinite=8.0)}
    (verdict,) = review(diagnosis, 20, losses, figs, {"relu1": "rectifier", "relu2": "rectifier"})
    assert verdict.figures["first_nonfinite_step"] == 12
    assert verdict.figures["first_nonfinite_parameter"] == "conv1.weight"
    assert verdict.figures["first_nonfinite_layer"] == "relu1"
    assert "non-finite (NaN or Inf) at step 12" in verdict.message
    assert review(diagnosis, 40, [(21, float("nan"))], figs, {"relu1": "rectifier"}) == []


def test_review_dead_rise_while_the_loss_falls_to_a_new_low_is_a_note():
    def run(tail, logs=(50,)):  # `fc` goes from 0% to 50% dead after the log at 25
        diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
        review(diagnosis, 25, [(s, 2.3) for s in range(1, 26)], {"fc": figures()},
               {"fc": "rectifier"})  # fmt: skip
        return [[(v.kind, v.severity) for v in review(
            diagnosis, log, [(s, tail(s)) for s in range(log - 24, log + 1)],
            {"fc": figures(dead=0.5)}, {"fc": "rectifier"})] for log in logs]  # fmt: skip

    assert run(lambda s: 2.3 - 0.02 * (s - 25)) == [[("dead_units", "note")]]  # 2.3 -> 1.8
    # the loss flat: held one log (maybe a transient of the first steps), then a problem
    assert run(lambda s: 2.3, logs=(50, 75)) == [[], [("dead_units", "problem")]]


def test_review_dead_note_then_problem_once_each():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    first = review(
        diagnosis, 25, healthy_losses(25), {"fc": figures(dead=0.3)}, {"fc": "rectifier"}
    )
    assert [(v.kind, v.severity) for v in first] == [("dead_units", "note")]
    assert "A note, not a problem" in first[0].message
    assert review(diagnosis, 50, [], {"fc": figures(dead=0.3)}, {"fc": "rectifier"}) == []
    worse = review(diagnosis, 75, [], {"fc": figures(dead=0.8)}, {"fc": "rectifier"})
    assert [(v.kind, v.severity) for v in worse] == [("dead_units", "problem")]
    assert "lower the learning rate" in worse[0].message


def test_review_dead_units_while_the_loss_never_left_chance_point_at_the_data():
    # shuffled training labels: the loss at 2.29-2.31 (ln 10) from the first step while
    # Adam silences half the dense layer; the cause is not the learning rate
    def run(level, acc=None, rms=lambda log: 1e-3):
        diagnosis, said = TrainingDiagnosis(0.25, 16, 0.025), []
        sites = {"fc": info("rectifier")}
        for log, dead in ((20, 0.0), (40, 0.5), (60, 0.5)):
            for s in range(log - 19, log + 1):
                diagnosis.loss.add(s, torch.tensor(level(s) + 0.01 * (-1) ** s))
            chance = (10, 2.303) if diagnosis.wants_chance() else None
            profile = [("conv", rms(log)), ("fc", rms(log))]
            said += diagnosis.review(log, 0, {"fc": figures(dead=dead)}, sites, profile,
                                     lambda: [], chance,
                                     probe_acc=None if acc is None else acc(log))  # fmt: skip
        return [v for v in said if v.kind == "dead_units"]

    # hunt 25: a 12-layer plain ReLU net under SGD 0.1 whose gradients rose 20-60x at
    # step 30 and whose units then died was told to check its labels: too large updates
    (burst,) = run(lambda s: math.log(10), rms=lambda log: 3e-2 if log == 40 else 1e-3)
    assert "The gradients rose to 30x their first level" in burst.message
    assert "Try: lower the learning rate" in burst.message and "label" not in burst.message

    (flat,) = run(lambda s: math.log(10))
    assert (
        flat.severity == "problem" and "stayed at its chance level (ln 10 = 2.303)" in flat.message
    )
    assert "check that each label belongs to its input" in flat.message
    # the probe at 37% once (hunt 24: Adam's L2 decay of 1.0 took it back to chance): it
    # had learnt, whatever the loss; "nothing has been learnt" would be false
    (fell,) = run(lambda s: math.log(10), acc=lambda step: 0.375 if step == 20 else 0.1)
    assert "chance level" not in fell.message and "nothing has been learnt" not in fell.message
    # 2.30 -> 2.16 by step 20, then flat: it moved, and has stalled (a loss still falling
    # beyond its noise between the logs would be learning going on: a note)
    (moved,) = run(lambda s: math.log(10) * (1 - 0.003 * min(s, 20)))
    assert moved.severity == "problem" and "chance level" not in moved.message
    assert "lower the learning rate (units die after too large an update)" in moved.message


def _stalled_dead_units(**settings):
    """The dead-unit verdicts of a loss that moved then stalled while half a layer died."""
    diagnosis, said = TrainingDiagnosis(0.25, 16, 0.025), []
    sites = {"fc": info("rectifier")}
    for log, dead in ((20, 0.0), (40, 0.5), (60, 0.5)):
        for s in range(log - 19, log + 1):
            level = 2.3 * (1 - 0.003 * min(s, 20)) + 0.01 * (-1) ** s  # moved, then stalled
            diagnosis.loss.add(s, torch.tensor(level))
        chance = (10, 2.303) if diagnosis.wants_chance() else None
        said += diagnosis.review(log, 0, {"fc": figures(dead=dead)}, sites, [], list, chance,
                                 **settings)  # fmt: skip
    return [v for v in said if v.kind == "dead_units"]


def test_review_dead_units_under_a_momentum_of_0_999_name_the_momentum():
    # held out: SGD lr 0.01 with momentum 0.999 on a BatchNorm CNN silenced a third of a
    # conv layer at step 160, told with "lower the learning rate" and no word of it
    def run(momentum):
        return _stalled_dead_units(lr=0.01, momentum=momentum)

    (verdict,) = run(0.999)
    assert verdict.severity == "problem"
    assert "The momentum is 0.999 (SGD's `momentum`, Adam's first beta)" in verdict.message
    assert "Try: lower the momentum to 0.9" in verdict.message
    (usual,) = run(0.9)
    assert "momentum" not in usual.message
    assert "lower the learning rate (units die after too large an update)" in usual.message


def test_review_dead_units_at_a_rate_cut_early_name_the_schedule():
    # held out (hunt 18): MultiStepLR stepped every batch cut 1e-3 to 1e-5 by step 4; a
    # third of a dense layer fell silent by step 40, told "lower the learning rate" first
    def run(lr):
        return _stalled_dead_units(lr=lr, lr_start=1e-3)

    (cut,) = run(1e-5)
    assert "The learning rate is 1e-05, 100x below the 0.001 set" in cut.message
    assert "Try: check the learning-rate schedule" in cut.message
    assert "lower the learning rate" not in cut.message
    (kept,) = run(1e-3)  # the rate set: the usual remedies
    assert "lower the learning rate (units die after too large an update)" in kept.message


def test_review_units_dying_after_one_jump_in_a_run_that_never_learnt_are_a_divergence():
    # SGD lr 1.0 with momentum on a ReLU CNN (a real run): one batch at 1.6x the start at
    # step 7, the loss back at chance by step 16 and never below it, a conv layer 34% -> 97%
    # dead by step 30. Its smoothed loss never passes the spike bar; the die-off confirms it
    sgd = [2.29, 2.23, 2.56, 2.18, 2.44, 2.32, 2.35, 3.65, 2.54, 2.57, 2.39, 2.32, 2.31, 2.41,
           2.43, 2.85, 2.36, 2.38, 2.26, 2.38, 2.26, 2.42, 2.38, 2.38, 2.4, 2.3, 2.33, 2.31,
           2.28, 2.32]  # fmt: skip
    shuffled = [math.log(10) + 0.01 * (-1) ** s for s in range(30)]  # no jump: the data's
    assert jump_to_chance(list(enumerate(sgd)))[:2] == (7, 3.65)
    learnt = sgd[:10] + [1.8] * 20  # the same jump, then a loss below its start: no blow-up
    assert jump_to_chance(list(enumerate(shuffled))) is None
    assert jump_to_chance(list(enumerate(learnt))) is None
    kinds = []
    for losses in (sgd, shuffled):
        diagnosis, said = TrainingDiagnosis(0.25, 16, 0.025), []
        sites = {"relu": info("rectifier")}
        for first, log, dead in ((0, 10, 0.34), (10, 30, 0.97)):
            for s in range(first, log):
                diagnosis.loss.add(s, torch.tensor(losses[s]))
            said += diagnosis.review(log, 0, {"relu": figures(dead=dead)}, sites, [], list)
        kinds.append([(v.kind, v.severity) for v in said])
        if losses is sgd:
            verdict = said[-1]
            assert verdict.figures["spike_step"] == 7
            assert verdict.figures["died/relu"] == pytest.approx(0.97)
            assert "spiked to 3.65 at step 7" in verdict.message
            assert "consequence, not the cause" in verdict.message
    # a note at the first log (too early to tell), then what the second log shows
    assert kinds == [[("dead_units", "note"), ("divergence", "problem")],
                     [("dead_units", "note"), ("dead_units", "problem")]]  # fmt: skip


# held out: a healthy 100-class CNN (two-digit images, Adam 1e-3), its training losses at
# steps 4-23 (flat at ln 100) and 31-50 (leaving it); 2.52 by step 92, 92% val at the end
FLAT_100 = [4.594, 4.597, 4.616, 4.611, 4.602, 4.58, 4.606, 4.628, 4.611, 4.588, 4.595,
            4.596, 4.604, 4.597, 4.596, 4.607, 4.597, 4.597, 4.597, 4.598]  # fmt: skip


LEAVING_100 = [4.582, 4.61, 4.593, 4.586, 4.54, 4.544, 4.481, 4.542, 4.6, 4.588, 4.54, 4.495,
               4.575, 4.491, 4.552, 4.471, 4.447, 4.51, 4.365, 4.513]  # fmt: skip


def _dead_at_50(logs):
    """The ``dead_units`` verdict of half a 64-unit dense layer silent at logs 23 and 50."""
    diagnosis, said, sites = TrainingDiagnosis(0.25, 16, 0.025), [], {"fc": info("rectifier")}
    for log, start, losses in logs:
        for s, value in enumerate(losses, start=start):
            diagnosis.loss.add(s, torch.tensor(value))
        chance = (100, 4.605) if diagnosis.wants_chance() else None
        said += diagnosis.review(log, 0, {"fc": figures(dead=0.5, width=64)}, sites, [],
                                 lambda: [], chance)  # fmt: skip
    (dead,) = [v for v in said if v.kind == "dead_units"]
    return dead


def test_review_dead_units_while_the_loss_leaves_chance_beyond_its_noise_are_a_note():
    # the loss fell 2.7% between the logs (under the 3% the saturation rules call falling),
    # 3.6 standard errors of its own noise: learning goes on, the silent half of the dense
    # layer (Adam's early transient) is a note, not "nothing has been learnt"
    dead = _dead_at_50([(23, 4, FLAT_100), (50, 31, LEAVING_100)])
    assert dead.severity == "note" and "learning goes on" in dead.message
    # the same layer over a loss that stays flat: a problem, the data named first
    dead = _dead_at_50([(23, 4, FLAT_100), (50, 31, FLAT_100)])
    assert dead.severity == "problem" and "stayed at its chance level (ln 100" in dead.message


def test_review_a_loss_scaled_far_above_the_models_cross_entropy_is_a_note_and_the_cause():
    # held out: cross-entropy x100 under SGD 0.01 with momentum; first loss 229 against the
    # probe's 2.31, a jump to 365 at step 7 with half a conv layer dead by step 10
    losses = [229.2, 226.0, 240.0, 218.0, 230.0, 231.0, 229.0, 365.0, 232.0, 230.0]
    diagnosis, said = TrainingDiagnosis(0.25, 16, 0.025), []
    sites = {"relu": info("rectifier")}
    for first, log, dead in ((0, 5, 0.0), (5, 10, 0.5)):
        for s in range(first, log):
            diagnosis.loss.add(s, torch.tensor(losses[s]))
        chance = (10, 2.31) if diagnosis.wants_chance() else None
        said += diagnosis.review(log, 0, {"relu": figures(dead=dead)}, sites, [], list, chance)
    assert [(v.kind, v.severity) for v in said] == [
        ("scaled_loss", "note"), ("divergence", "problem")
    ]  # fmt: skip
    note, divergence = said
    assert note.figures["scale"] == pytest.approx(229.2 / 2.31, abs=0.1)
    assert (
        "~99x the model's own cross-entropy" in note.message
        and "Adam's steps barely follow the loss's scale" in note.message
    )
    assert "~99x larger than the learning rate says" in divergence.message
    assert "standard initialisation" not in divergence.message  # the weights are sane
    # the same first loss from a model whose own cross-entropy is huge: the weights' scale
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    for s in range(5):
        diagnosis.loss.add(s, torch.tensor(losses[s]))
    found = diagnosis.review(5, 0, {}, {}, [], list, chance=(10, 150.0))
    assert [v.kind for v in found] == ["exploding_gradients"]


def test_review_a_trained_model_fitted_again_is_no_loss_scaled_down():
    # setups hunt 59: a model trained in a first fit, fitted again with plain mean
    # cross-entropy: first losses near 0.005 against the probe's 0.05, told "~0.096x"
    def review(losses, probe_loss):
        diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
        for s, value in enumerate(losses):
            diagnosis.loss.add(s, torch.tensor(value))
        return diagnosis.review(5, 0, {}, {}, [], list, chance=(4, probe_loss))

    assert review([0.0048, 0.0061, 0.0039, 0.0052, 0.0050], 0.05) == []
    # the same losses from a model near its start (the probe at ln 4): scaled down
    (note,) = review([0.0048, 0.0061, 0.0039, 0.0052, 0.0050], 1.39)
    assert (note.kind, note.severity) == ("scaled_loss", "note")


@pytest.mark.parametrize("jumped", [True, False])
def test_review_dead_units_after_a_layer_rewritten_name_the_rewrite_not_the_rate(jumped):
    # hunt 65: a GroupNorm's bias shifted by -20 mid-run under Adam 1e-3 silenced the ReLU
    # after it, told "Try: lower the learning rate" first and "check the bias" last
    diagnosis, said, sites = TrainingDiagnosis(0.25, 16, 0.025), [], {"relu": info("rectifier")}
    for log in (25, 50, 75, 100):
        for s in range(log - 25, log):
            diagnosis.loss.add(s, torch.tensor(2.3 * math.exp(-s / 30) + 0.1 if log < 75 else 2.3))
        chance = (10, 2.31) if diagnosis.wants_chance() else None
        bias = 113.0 if jumped and log >= 75 else 0.5
        said += diagnosis.review(log, 0, {"relu": figures(dead=float(log >= 75), width=32)},
                                 sites, [], list, chance, norms={"gn": 5.6, "gn:bias": bias},
                                 lr=1e-3)  # fmt: skip
    (dead,) = [v for v in said if v.kind == "dead_units"]
    assert dead.severity == "problem"
    rewrite = "The biases of `gn` jumped from norm 0.5 to 113 between two logs"
    assert (rewrite in dead.message) is jumped
    assert ("Try: lower the learning rate" in dead.message) is not jumped
    if jumped:
        assert "find what writes that layer during training" in dead.message


def test_weight_decay_too_strong_while_the_loss_sits_at_its_start():
    # held out: SGD 0.05 with weight_decay=0.3 (1.5% of every weight a step) never left
    # ln 10; it was told as vanishing gradients with init and architecture remedies
    def review(decay, losses, step=40, lr=0.05):
        diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
        for s, value in enumerate(losses, start=1):
            diagnosis.loss.add(s, torch.tensor(value))
        return diagnosis.review(step, 0, {}, {}, [], list, lr=lr, decay=decay)

    flat = [2.303 + 0.01 * math.sin(s) for s in range(40)]
    (verdict,) = review((0.015, 0.3), flat)
    assert (verdict.kind, verdict.severity) == ("weight_decay_too_strong", "problem")
    assert "takes 1.5% of every weight each step (learning rate 0.05 x `weight_decay=0.3`)" in (
        verdict.message
    )
    assert verdict.figures["decay_per_step"] == 0.015
    assert review((0.015, 0.3), flat, step=20) == []  # a slow start is no stall yet
    assert review((5e-5, 5e-4), flat) == []  # usual SGD decay: not the cause
    falling = [2.3 * math.exp(-s / 15) + 0.1 for s in range(40)]
    assert review((0.015, 0.3), falling) == []  # learning despite it: quiet
    # held-out hunt 122: Adam's L2 of 1.0 (no share a step: coupled to the gradient)
    (verdict,) = review((None, 1.0), flat, lr=1e-3)
    assert (verdict.kind, verdict.severity) == ("weight_decay_too_strong", "problem")
    assert "`weight_decay=1` in an adaptive optimiser (Adam, RMSprop) is L2" in verdict.message
    assert "Try: lower the weight decay (L2 of 1e-5 to 1e-3 is usual" in verdict.message
    assert review((None, 1e-4), flat, lr=1e-3) == []  # a usual L2


def _dead_told(losses, logs, width):
    """``(log, severity)`` of the dead-unit verdicts of one layer whose share is ``logs``'."""
    diagnosis, said, sites = TrainingDiagnosis(0.25, 16, 0.025), [], {"fc": info("rectifier")}
    previous = 0
    for log, dead in logs:
        for s in range(previous, log):
            diagnosis.loss.add(s, torch.tensor(losses[s]))
        previous, chance = log, (10, 2.31) if diagnosis.wants_chance() else None
        found = diagnosis.review(log, 0, {"fc": figures(dead=dead, width=width)}, sites, [],
                                 list, chance)  # fmt: skip
        said += [(log, v.severity) for v in found if v.kind == "dead_units"]
    return said


def test_review_a_dense_head_mostly_silent_while_the_loss_falls_noisily_is_a_note():
    # hunt 66: a 3136 -> 256 dense head 78% dead at step 20 under SGD momentum while the
    # loss fell 2.39 -> 0.99, just above its noisy low: told "large" (a problem),
    # withdrawn by step 80; the run reached 97%
    logs = ((10, 0.08), (20, 0.78), (30, 0.78))
    start = [2.39 - 0.12 * s for s in range(10)]
    noisy = [0.9, 0.75, 0.7, 0.8, 0.95, 1.0, 0.9, 0.98, 1.02, 0.99] + [0.95] * 10
    assert _dead_told(start + noisy, logs, 256) == [(20, "note")]
    # the same share while the loss rose back over its level at the last log: a problem
    assert _dead_told(start + [1.6] * 20, logs, 256) == [(30, "problem")]


def test_review_a_dense_head_mostly_silent_at_the_first_log_of_a_learning_run_is_a_note():
    # hunt 69: a 3136 -> 256 dense head 77% dead at the first log (step 27) under SGD
    # momentum, the loss 75-80% below its start and 61% val: told "large" (no log before
    # it to have fallen from), withdrawn at the next; the run reached 98%
    learning = [2.3 * 0.95**s for s in range(20)] + [0.9, 0.75, 0.7, 0.8, 0.95, 1.0, 0.9]
    assert _dead_told(learning, ((27, 0.77),), 256) == [(27, "note")]


def test_review_units_dying_late_while_the_loss_falls_noisily_are_a_note():
    # hunt 67: a conv 0% -> 31% dead at step 60 of a no-norm net under SGD momentum, the
    # loss 90% down and falling, just above its noisy low: told "rising" ("a late
    # collapse"), withdrawn at 120; 96-97% val at the end
    def told(after):
        losses = [2.3 * 0.93**s for s in range(40)] + after
        return _dead_told(losses, ((20, 0.0), (40, 0.0), (60, 0.31), (80, 0.31)), 64)

    # down to 0.08 by step 50, back up to 0.11 by the log: fallen since the last one
    noisy = [0.15 - 0.007 * s for s in range(10)] + [0.085 + 0.003 * s for s in range(10)]
    assert told(noisy + [0.1] * 20) == [(60, "note")]
    # the same share while the loss climbs back over its level at the last log: a problem
    assert "problem" in [severity for _, severity in told([0.2 + 0.01 * s for s in range(40)])]


def test_review_rules_output_activation_gone_once_its_classes_score_again():
    # held out (hunt 95): a SqueezeNet's class at 0 at step 40 of a run that ended with every
    # class recalled stood as a problem to the end, and later problems named it as their cause
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    kinds, losses, said = {"out": "rectifier"}, healthy_losses(140), []
    steps = ((20, 0.25), (40, 0.25), (60, 0.0), (80, 0.5), (100, 0.0), (120, 0.0), (140, 0.5))
    for step, dead in steps:  # clear at 60, a class stuck again at 80: clear only from 100
        chance = (4, 1.39) if diagnosis.wants_chance() else None
        figs = {"out": figures(dead=dead, width=4)}
        window = [(s, v) for s, v in losses if step - 20 < s <= step]
        found = review(diagnosis, step, window, figs, kinds, chance=chance, output_site="out")
        said += [(step, v.severity, v.change) for v in found if v.kind == "output_activation"]
    assert said == [(20, "problem", "new"), (120, "note", "gone"), (140, "problem", "new")]
