"""Gradient, saturation and initial-scale rules log by log: growth, vanishing, init explosion."""

import math

import pytest
import torch

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.gradients import depth_ratio, gradient_findings
from lightning_cnnviz.activations.initial_scale import init_explosion, scaled_loss
from tests.activations.series import figures, flat, healthy_losses, info, review, said


def test_gradients_vanishing_first_layer_alone_with_thirds_under_5e_3():
    # van_plain_tanh16: body.0 4.9e-7 vs the last 2.6e-3; by thirds 1.6e-3
    firsts = [4.9e-7, 2e-6, 3e-6, 3e-6, 4e-6, 5e-6]
    values = firsts + [1e-5] * 6 + [1e-3, 1.5e-3, 2e-3, 2e-3, 2.5e-3, 2.6e-3]
    profile = [(f"c{i}", v) for i, v in enumerate(values)]
    ((kind, severity, message, fig),) = gradient_findings(profile, None, {}, None)
    assert (kind, severity) == ("vanishing_gradients", "problem")
    assert 1e-3 < fig["depth_ratio"] < 5e-3
    assert fig["first_last_ratio"] == pytest.approx(1.9e-4, 0.01)
    assert "the first layer alone 1.9e-04" in message
    # a stem far below the head, but the thirds within two orders: healthy
    healthy = [("stem", 1e-6)] + [(f"c{i}", 1e-3) for i in range(7)] + [("fc", 3e-3)]
    assert gradient_findings(healthy, None, {}, None) == []
    # a healthy 8-conv plain ReLU CNN in its flat start: 1.4e-3 alone, 1.7e-2 by thirds
    values = [1.4e-5, 6e-5, 6e-5, 1e-4, 1e-4, 1e-4, 3.5e-3, 3.5e-3, 1e-2]
    plain = [(f"c{i}", v) for i, v in enumerate(values)]
    assert gradient_findings(plain, None, {}, None) == []
    assert depth_ratio(plain) == pytest.approx(1.7e-2, 0.01)


def test_gradients_vanishing_in_a_rectifier_net_gets_no_sigmoid_remedies():
    # hunt 112: a ReLU net under weight decay 1.0, first layers at 3.3e-4 of the last ones'
    # gradient, told "use ReLU-family activations instead of Sigmoid/Tanh"
    profile = [("net.0", 1.1e-9), ("net.3", 1e-8), ("net.6", 1e-7), ("net.9", 3.2e-6)]
    relus = {"net.1": 0.0, "net.4": 0.0}  # rectifiers read for a capped top: none there
    ((kind, _, message, _),) = gradient_findings(profile, None, relus, True, capped=relus)
    assert kind == "vanishing_gradients" and "Sigmoid/Tanh" not in message
    assert "He (kaiming) initialisation" in message
    tanh = {"net.2": 0.3} | relus
    ((_, _, message, _),) = gradient_findings(profile, None, tanh, True, capped=relus)
    assert "instead of Sigmoid/Tanh" in message


def test_gradients_growth_while_the_loss_reaches_new_lows_is_no_explosion():
    profile = [("a", 1e-3), ("b", 1e-3), ("c", 1e-3)]
    assert gradient_findings(profile, 1e-6, {}, False, new_low=True) == []
    ((kind, severity, message, _),) = gradient_findings(profile, 1e-6, {}, False, new_low=False)
    assert (kind, severity) == ("exploding_gradients", "problem") and "grew 1000x" in message


def test_gradients_growth_in_the_first_steps_is_no_explosion():
    # setups hunt 19: a timm ConvNeXt (layer scales 1e-6 at init) under Adam, its gradients
    # 5577x their first log's one step later with the loss 2.302 -> 2.416 -> 0.957: told
    # "Exploding gradients" at step 2 of a healthy run
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    small, grown = [("a", 1e-7), ("b", 1e-7)], [("a", 5.6e-4), ("b", 5.6e-4)]
    assert review(diagnosis, 1, [(0, 2.302)], {}, {}, small) == []
    assert review(diagnosis, 2, [(1, 2.416)], {}, {}, grown) == []
    # once the loss has a level, a growth with the loss off its lows is still told
    rising = [(s, 2.0 + 0.02 * s) for s in range(2, 40)]
    exploded = [("a", 0.2), ("b", 0.2)]
    up = review(diagnosis, 40, rising, {}, {}, exploded)
    assert [(v.kind, v.severity) for v in up] == [("exploding_gradients", "problem")]


def test_init_explosion_needs_both_the_training_loss_and_the_probe_far_above_chance():
    (kind, severity, message, fig) = init_explosion([1212.0, 800.0, 212.0], 10, 300.0)
    assert (kind, severity) == ("exploding_gradients", "problem")
    assert message.startswith(
        "Exploding activations at initialisation: the initial loss 1212 is ~347x the chance "
        "level ln 10 = 2.30"
    )
    assert "initial weights are too large" in message and "Kaiming" in message
    assert fig["over_chance"] == pytest.approx(800.0 / math.log(10))
    assert init_explosion([147.0] * 5, 10, 2.31) is None  # a loss summed over 64 images
    assert init_explosion([2.3] * 5, 10, 300.0) is None  # eval-mode BatchNorm at its start
    assert init_explosion([1212.0], 1, 300.0) is None  # one output: no chance level
    # div_resnet18_sgd_hi (SGD 4.0): 2.48 before any update, 190 after the first: divergence
    assert init_explosion([2.48, 189.9], 10, 4.3e25) is None


def test_init_explosion_brought_down_by_the_first_updates_is_no_scaled_loss():
    # held out (hunt 95): init gain 2.5, losses 183 -> 2.6 in 3 steps, the probe at 1.6 by the
    # first log (step 7): told as a loss "scaled or summed", and not_learning named it
    losses = [183.5, 70.6, 20.1, 2.6, 2.8, 1.9, 1.7, 1.6]
    kind, severity, message, _ = init_explosion(losses, 4, 1.61)
    assert (kind, severity) == ("exploding_gradients", "problem")
    assert "the first updates shrank the weights: the probe's cross-entropy 1.61" in message
    assert scaled_loss(losses, 4, 1.61) is None
    summed = [147.0, 150.0, 146.0, 149.0, 148.0, 147.5, 146.5, 148.5]  # stays 64x: summed
    assert init_explosion(summed, 10, 2.31) is None
    assert scaled_loss(summed, 10, 2.31)[1]["scale"] == pytest.approx(63.6)


def test_init_explosion_brought_down_in_two_updates_read_at_a_log_soon_after():
    # held out (hunt 96): 123, 223, 4.0 (median of five 7.5-20); read at step 1 of a short run,
    # 123 and 223 against the probe's 3.9 were told a loss "summed over the batch"
    assert init_explosion([122.8, 222.9, 3.99, 3.84, 2.62], 10, 3.9)[0] == "exploding_gradients"
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    sites = {}

    def log(step, losses):
        for s, value in losses:
            diagnosis.loss.add(s, torch.tensor(value))
        chance = (10, 3.9) if diagnosis.wants_chance() else None
        return diagnosis.review(step, 0, {}, sites, [], list, chance=chance)

    assert log(1, [(0, 122.8), (1, 222.9)]) == [] and diagnosis.wants_chance()  # too soon
    (found,) = log(6, [(2, 3.99), (3, 3.84), (4, 2.62), (5, 3.08), (6, 2.9)])
    assert (found.kind, found.severity) == ("exploding_gradients", "problem")
    assert not diagnosis.wants_chance()


def test_init_explosion_once_and_dead_units_then_name_the_weights_scale():
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"relu": "rectifier"}
    losses = [(0, 1212.0), (1, 900.0), (2, 212.0)]
    (verdict,) = review_chance(diagnosis, 3, losses, {"relu": figures(width=16)}, kinds)
    assert (verdict.kind, verdict.severity) == ("exploding_gradients", "problem")
    assert verdict.message.startswith("At step 3 (epoch 0): Exploding activations at init")
    assert not diagnosis.wants_chance()
    # the loss falls to chance (ln 10), units die: the cause is the weights' scale
    losses = [(s, 2.4) for s in range(3, 31)]
    (dead,) = review_chance(diagnosis, 30, losses, {"relu": figures(dead=0.8125, width=16)}, kinds)
    assert (dead.kind, dead.severity) == ("dead_units", "problem")
    assert "weights' scale at initialisation is the cause" in dead.message
    assert "learning rate (units die" not in dead.message
    assert dead.figures["progress"] < 0  # measured from the chance level, not from 1212


def test_init_explosion_not_read_from_losses_after_the_run_s_first_step():
    # setups hunt 67: a fit resumed at step 33 from a checkpoint without the monitors' state,
    # its rate raised 50x before: "Exploding activations at initialisation"
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"relu": "rectifier"}
    losses = [(33, 1212.0), (34, 900.0), (35, 212.0)]
    assert review_chance(diagnosis, 36, losses, {"relu": figures(width=16)}, kinds) == []
    assert not diagnosis.wants_chance()  # checked once: not asked again


def review_chance(diagnosis, step, losses, figs, kinds):
    for s, value in losses:
        diagnosis.loss.add(s, torch.tensor(value))
    sites = {site: info(kind) for site, kind in kinds.items()}
    chance = (10, 300.0) if diagnosis.wants_chance() else None
    return diagnosis.review(step, 0, figs, sites, [], list, chance=chance)


def test_init_explosion_healthy_start_is_quiet():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    losses = healthy_losses(25)
    assert review_chance(diagnosis, 25, losses, {}, {}) == [] and not diagnosis.wants_chance()


def test_gradients_growth_reads_the_loss_low_incrementally_across_logs():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    profile = [("a", 1e-6), ("b", 1e-6), ("c", 1e-6)]
    falling = [(s, 2.3 - 0.01 * s) for s in range(1, 31)]
    assert review(diagnosis, 30, falling, {}, {}, profile) == []
    grown = [(name, 1e-3) for name, _ in profile]
    # a deep plain net's flat start ends: the gradients grow 1000x as the loss falls
    assert review(diagnosis, 60, [(s, 2.0 - 0.01 * s) for s in range(31, 61)], {}, {}, grown) == []
    # the loss turns up (not a spike yet) and the gradients grow 100x above the level they
    # reached while the loss fell: an explosion (the flat start's trickle is no baseline)
    up = review(diagnosis, 90, [(s, 1.9) for s in range(61, 91)], {}, {}, grown)
    assert up == []
    exploded = [(name, 0.2) for name, _ in profile]
    up = review(diagnosis, 120, [(s, 1.9) for s in range(91, 121)], {}, {}, exploded)
    assert [(v.kind, v.severity) for v in up] == [("exploding_gradients", "problem")]
    assert "grew 200x" in up[0].message and up[0].figures["first_mean_rms"] == pytest.approx(1e-3)


def noisy_fall(start, stop, high, low, seed=0, noise=0.08):
    """A loss falling linearly from ``high`` to ``low`` with +-``noise`` batch noise."""
    g = torch.Generator().manual_seed(seed)
    noise = 1 + noise * (2 * torch.rand(stop - start, generator=g) - 1)
    slope = (low - high) / (stop - start)
    return [
        (s, (high + slope * (s - start)) * float(n))
        for s, n in zip(range(start, stop), noise, strict=True)
    ]


def test_gradients_growth_from_a_zero_head_trickle_is_no_explosion():
    # h_zero_head: a zero-initialised final Linear blocks backprop at first (1e-4 at step 5);
    # 124x that at step 40 while the loss falls 2.30 -> 1.23, noisily: the median at step 40
    # is just above its low (the old rule read "at its lowest" at the log's step only)
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    trickle = [(f"c{i}", 1e-4) for i in range(4)]
    assert review(diagnosis, 5, flat(0, 6, 2.30), {}, {}, trickle) == []
    falling = noisy_fall(6, 36, 2.30, 1.20) + flat(36, 41, 1.26)
    flowing = [(f"c{i}", 1.24e-2) for i in range(4)]
    assert review(diagnosis, 40, falling, {}, {}, flowing) == []
    # later logs measure from the flowing level: the loss still falls, nothing to say
    assert review(diagnosis, 80, noisy_fall(41, 81, 1.20, 0.60, 1), {}, {}, flowing) == []
    assert diagnosis.first_rms == pytest.approx(1.24e-2)


def test_gradients_growth_while_the_loss_turns_up_is_still_an_explosion():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    healthy = [(f"c{i}", 1e-2) for i in range(4)]
    assert review(diagnosis, 20, noisy_fall(0, 21, 2.3, 1.5), {}, {}, healthy) == []
    # a new low early in the interval, then the loss climbs 30% over it: not at its lows
    rising = noisy_fall(21, 26, 1.5, 1.4) + [(s, 1.4 + 0.03 * (s - 25)) for s in range(26, 41)]
    exploded = [(name, 5.0) for name, _ in healthy]
    up = review(diagnosis, 40, rising, {}, {}, exploded)
    assert [(v.kind, v.severity) for v in up] == [("exploding_gradients", "problem")]


def test_saturation_while_the_loss_falls_since_the_last_log_is_a_note():
    # h_sigmoid_shallow seed 0: at chance until ~step 160, then 1.379 -> 1.336 by step 180
    # (3.1%, its lowest yet) with `net.3` 59% at a rail (74% accuracy later): learning
    found = gradient_findings([("a", 1e-3)] * 3, None, {"sig": 0.59}, True, falling=True)
    assert [(k, s) for k, s, *_ in found] == [("saturated_activations", "note")]
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"sig": "saturating"}
    profile = [(f"c{i}", 1e-3) for i in range(3)]
    sat = {"sig": figures(saturation=0.25)}
    assert review(diagnosis, 120, flat(0, 121, 1.39), sat, kinds, profile) == []
    leaving = flat(121, 160, 1.39) + noisy_fall(160, 181, 1.39, 1.33, noise=0.02)
    said_now = review(diagnosis, 180, leaving, {"sig": figures(saturation=0.59)}, kinds, profile)
    assert said(said_now) == [("saturated_activations", "note", "new")]


def test_saturation_on_a_plateau_with_a_small_dip_is_still_a_problem():
    # a stalled run's medians move up to 1.4% between logs: no sign of learning
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"sig": "saturating"}
    profile = [(f"c{i}", 1e-3) for i in range(3)]
    sat = {"sig": figures(saturation=0.25)}
    assert review(diagnosis, 120, flat(0, 121, 1.39), sat, kinds, profile) == []
    dip = flat(121, 176, 1.39) + flat(176, 181, 1.365)  # 1.8% below, a new low
    found = review(diagnosis, 180, dip, {"sig": figures(saturation=0.59)}, kinds, profile)
    assert said(found) == [("saturated_activations", "problem", "new")]


def test_saturation_problem_becomes_a_note_once_the_loss_falls_well():
    # h_sigmoid_shallow seed 1: 73% at a rail at step 60 while at chance (a problem), then
    # learning begins: the loss falls 29% from the start by step 360
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"sig": "saturating"}
    profile = [(f"c{i}", 1e-3) for i in range(3)]
    stuck = review(
        diagnosis, 60, flat(0, 61, 1.39), {"sig": figures(saturation=0.73)}, kinds, profile
    )
    assert said(stuck) == [("saturated_activations", "problem", "new")]
    slow = flat(61, 300, 1.38)
    assert review(diagnosis, 300, slow, {"sig": figures(saturation=0.8)}, kinds, profile) == []
    learnt = noisy_fall(300, 361, 1.30, 0.95)
    eased = review(diagnosis, 360, learnt, {"sig": figures(saturation=0.88)}, kinds, profile)
    assert said(eased) == [("saturated_activations", "note", "gone")]
    assert "no longer hold learning back" in eased[0].message and "`sig` 88%" in eased[0].message
    assert eased[0].figures["progress"] > 0.2
    # said once: the next logs add nothing
    more = noisy_fall(361, 421, 0.95, 0.7)
    assert review(diagnosis, 420, more, {"sig": figures(saturation=0.9)}, kinds, profile) == []


def test_vanishing_problem_becomes_a_note_once_gradients_flow_and_the_loss_falls():
    # held out: a 12-conv plain ReLU net under Adam 1e-3, first layers at 2.6e-3 of the last
    # at step 5 (at chance to step 46), then 0.24 at step 50 and 88% val
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    starved = [("c0", 1e-7), ("c1", 1e-7), ("c2", 1e-5), ("c3", 1e-3), ("c4", 1e-3)]
    stuck = review(diagnosis, 20, flat(0, 21, 2.30), {}, {}, starved)
    assert said(stuck) == [("vanishing_gradients", "problem", "new")]
    flowing = [(f"c{i}", 1e-2) for i in range(5)]
    eased = review(diagnosis, 60, noisy_fall(21, 61, 2.30, 1.0), {}, {}, flowing)
    assert said(eased) == [("vanishing_gradients", "note", "gone")]
    assert "gradients reach the first layers again (1.0e+00" in eased[0].message
    more = review(diagnosis, 100, noisy_fall(61, 101, 1.0, 0.6), {}, {}, flowing)
    assert more == []  # said once


def test_init_explosion_without_a_class_count_is_skipped_and_not_asked_again():
    # a regression head or a dict output: no K, so no chance level to compare with
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    for step in range(5):
        diagnosis.loss.add(step, torch.tensor(1212.0))
    assert diagnosis.review(5, 0, {}, {}, [], list, chance=None) == []
    assert not diagnosis.wants_chance()


def test_gradient_episodes_an_exploding_start_on_raw_inputs_names_the_inputs():
    # hunt 100: 0-1023 counts into a Conv1d at PyTorch's default init: "the initial weights
    # are too large ... Try: a standard initialisation (PyTorch's default ...)"
    kind, severity, text, figures = init_explosion([95.1, 80.0, 60.0], 5, 52.6, raw_inputs=1023.0)
    assert (kind, severity, figures["input_max"]) == ("exploding_gradients", "problem", 1023.0)
    assert "the inputs reach |x| = 1023" in text and "initial weights are too large" not in text
    assert "Try: the inputs scaled to unit range" in text and "PyTorch's default" not in text
    _, _, weights, _ = init_explosion([95.1, 80.0, 60.0], 5, 52.6)
    assert "the initial weights are too large" in weights
