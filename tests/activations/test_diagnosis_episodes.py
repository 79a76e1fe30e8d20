"""Dead/dormant episodes, holds while a spike waits, and the initial-scale and vanishing rules.

Synthetic loss series and figures, fed to ``TrainingDiagnosis`` log by log as the
monitor does; the figures mirror the failure-recall hunt's runs they came from.
"""

import math

import pytest
import torch

from lightning_cnnviz.activations.dead_rules import dead_reason
from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.episodes import UnitEpisodes, die_off
from lightning_cnnviz.activations.gradients import depth_ratio, gradient_findings
from lightning_cnnviz.activations.initial_scale import init_explosion
from tests.activations.series import figures, healthy_losses, info, review


def said(verdicts):
    return [(v.kind, v.severity, v.change) for v in verdicts]


def flat(start, stop, value=1.38):
    return [(s, value) for s in range(start, stop)]


def test_dead_reason_under_the_threshold_in_a_slow_start_does_not_hurt():
    # dead_planted_shapes: body.6 5% -> 17% at step 20 while the loss sat at ln 4 (slow start)
    assert dead_reason(0.17, 0.05, 0.009, dead=11, threshold=0.25) is None
    assert dead_reason(0.28, None, 0.03, dead=18, threshold=0.25) == "stalled"
    assert dead_reason(0.61, 0.03, 0.214, dead=39, threshold=0.25) == "rising"  # the plant


def test_episodes_a_squeeze_excite_bottleneck_is_judged_by_the_loss_alone():
    # hunt 29: timm ghostnet_050's SE units 30% -> 55% silent at step 40 with the loss down
    # 75% (healthy, 90% val): a late collapse by the rise alone, told as a problem
    kinds, dead = {"se.act1": "rectifier"}, {"se.act1": list(range(26))}
    alert = [("se.act1", 0.55, 0.3)]
    plain = UnitEpisodes(0.25).review(40, 1, alert, {"se.act1": 0.55}, kinds, dead, 0.75)
    assert said(plain) == [("dead_units", "problem", "new")]
    squeezed = UnitEpisodes(0.25).review(40, 1, alert, {"se.act1": 0.55}, kinds, dead, 0.75,
                                         squeezed={"se.act1"})  # fmt: skip
    assert said(squeezed) == [("dead_units", "note", "new")]
    # while the loss has not moved, most of it silent is a problem still
    silent = {"se.act1": list(range(38))}
    found = UnitEpisodes(0.25).review(60, 1, [("se.act1", 0.8, 0.3)], {"se.act1": 0.8}, kinds,
                                      silent, 0.02, squeezed={"se.act1"})  # fmt: skip
    assert said(found) == [("dead_units", "problem", "new")]


def test_episodes_dead_units_recover_to_a_note_then_a_new_die_off_is_reported():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    kinds = {"conv": "rectifier"}
    first = review(diagnosis, 20, flat(1, 21), {"conv": figures(dead=0.875, width=32)}, kinds)
    assert said(first) == [("dead_units", "problem", "new")]
    assert review(diagnosis, 40, flat(21, 41), {"conv": figures(dead=0.5, width=32)}, kinds) == []
    back = review(diagnosis, 60, flat(41, 61, 0.9), {"conv": figures(dead=0.0, width=32)}, kinds)
    assert said(back) == [("dead_units", "note", "gone")]
    assert back[0].message.startswith("Dead units recovered by step 60 (epoch 0): `conv` 0% dead")
    assert "Reported at step 20 as a problem" in back[0].message
    assert back[0].figures == {"conv": 0.0, "reported_step": 20, "recovered_step": 60}
    # a die-off later: a new episode, reported again (learning had moved on: 0.9 -> 0.9)
    again = review(diagnosis, 80, flat(61, 81, 0.9), {"conv": figures(dead=0.875, width=32)}, kinds)
    assert said(again) == [("dead_units", "problem", "new")]
    assert "`conv`: 88% of units dead" in again[0].message


def test_episodes_a_share_reported_below_the_bar_and_unchanged_has_not_recovered():
    # hunt 18: "Dormant units recovered by step 160: `model.a3` 12% dormant (was 12%)"
    episodes = UnitEpisodes(0.25)
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(8))}
    assert said(episodes.review(40, 0, [("fc", 0.12, 0.0)], {"fc": 0.12}, kinds, dead, 0.1))
    assert episodes.review(60, 0, [], {"fc": 0.12}, kinds, dead, 0.25) == []
    assert said(episodes.review(80, 0, [], {"fc": 0.02}, kinds, dead, 0.25)) == [
        ("dead_units", "note", "gone")
    ]


def test_episodes_a_share_still_past_half_the_threshold_has_not_recovered():
    episodes = UnitEpisodes(0.25)
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(8))}
    assert said(episodes.review(40, 0, [("fc", 0.8, 0.0)], {"fc": 0.8}, kinds, dead, 0.1))
    assert episodes.review(60, 0, [], {"fc": 0.13}, kinds, dead, 0.25) == []
    assert said(episodes.review(80, 0, [], {"fc": 0.12}, kinds, dead, 0.25)) == [
        ("dead_units", "note", "gone")
    ]


def test_episodes_stalled_alone_waits_one_log_before_it_is_a_problem():
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"a": "rectifier", "b": "rectifier"}
    width = 64  # 16+ dead units: not a small layer
    fig = {"a": figures(dead=0.25, width=width), "b": figures(dead=0.28, width=width)}
    assert review(diagnosis, 40, flat(1, 41), fig, kinds) == []  # held: maybe a slow start
    # `a` fell back (a slow start's transient: dropped); `b` stays silent while learning stalls
    fig = {"a": figures(dead=0.09, width=width), "b": figures(dead=0.28, width=width)}
    (verdict,) = review(diagnosis, 60, flat(41, 61), fig, kinds)
    assert (verdict.kind, verdict.severity) == ("dead_units", "problem")
    assert "`b`: 28% of units dead" in verdict.message and "`a`" not in verdict.message


def test_episodes_an_early_fast_rise_waits_one_log_for_the_loss_to_tell():
    # a BN CNN under Adam: the dense layer after the flatten 8% -> 40% dead at step 20,
    # the loss down 29% (under SLOW); then the loss falls on and the share stays flat
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(51))}
    episodes = UnitEpisodes(0.25)
    assert episodes.review(20, 0, [("fc", 0.40, 0.08)], {"fc": 0.40}, kinds, dead, 0.29) == []
    (later,) = episodes.review(40, 0, [], {"fc": 0.41}, kinds, dead, 0.68)
    assert (later.kind, later.severity) == ("dead_units", "note")  # no late collapse either
    assert "A note, not a problem: learning goes on" in later.message
    # the same rise while the loss still does not fall well: a problem at the next log
    episodes = UnitEpisodes(0.25)
    assert episodes.review(20, 0, [("fc", 0.40, 0.08)], {"fc": 0.40}, kinds, dead, 0.29) == []
    (later,) = episodes.review(40, 0, [], {"fc": 0.41}, kinds, dead, 0.25)
    assert (later.severity, later.figures["fc"]) == ("problem", 0.41)
    assert "41% of units dead" in later.message and "; up from 8%)" in later.message
    # a fast rise once the model has learnt is told at once (a late collapse)
    episodes = UnitEpisodes(0.25)
    (at_once,) = episodes.review(60, 1, [("fc", 0.40, 0.08)], {"fc": 0.40}, kinds, dead, 0.8)
    assert at_once.severity == "problem"
    # ...but not within the first SETTLED steps, however far the loss fell: a 99:1 binary
    # task at 0.01 by step 10, its dense layer 7% -> 51% dead at step 20 (held out: healthy)
    episodes = UnitEpisodes(0.25)
    (early,) = episodes.review(20, 0, [("fc", 0.51, 0.07)], {"fc": 0.51}, kinds, dead, 0.98)
    assert early.severity == "note"


def test_episodes_an_alert_held_at_the_last_log_is_told_at_the_end_of_fit():
    # configs/dead_relu.yaml in one epoch: its only log (step 25) has relu2 38% dead with
    # the loss at chance; no later log comes to confirm it, so the end of fit does
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"relu2": "rectifier"}
    fig = {"relu2": figures(dead=0.375, width=32)}
    assert review(diagnosis, 25, flat(1, 26, 2.3), fig, kinds) == []
    (verdict,) = diagnosis.conclude()
    assert (verdict.kind, verdict.severity) == ("dead_units", "problem")
    assert verdict.message.startswith("Dead units at step 25 (epoch 0): `relu2`: 38%")
    assert diagnosis.conclude() == []  # told once


def test_episodes_an_alert_held_at_the_last_log_survives_a_checkpoint():
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    for step, value in flat(1, 26, 2.3):
        diagnosis.loss.add(step, torch.tensor(value))
    fig = {"relu2": figures(dead=0.375, width=32)}
    assert diagnosis.review(25, 3, fig, {"relu2": info("rectifier")}, [], lambda: []) == []
    resumed = TrainingDiagnosis(0.25, 16, 0.025)
    resumed.load_state_dict(diagnosis.state_dict())
    (verdict,) = resumed.conclude()
    assert verdict.message.startswith("Dead units at step 25 (epoch 3): `relu2`: 38%")


def test_episodes_nothing_held_at_the_end_of_fit_tells_nothing():
    diagnosis, kinds = TrainingDiagnosis(0.25, 16, 0.025), {"conv": "rectifier"}
    first = review(diagnosis, 20, flat(1, 21), {"conv": figures(dead=0.875, width=32)}, kinds)
    assert said(first) == [("dead_units", "problem", "new")]
    assert diagnosis.conclude() == []  # reported already, nothing held


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


def test_dead_units_behind_a_gradient_cut_are_a_note_naming_the_cut():
    # hunt 35: a straight-through estimator written without `.detach()` (gradient exactly
    # 0 to the convolutions): the units after them told dead, "lower the learning rate"
    kinds, profile = {"relu": "rectifier"}, [("c1", 0.0), ("c2", 0.0), ("fc", 2e-3)]
    stalled = [(s, 2.3 - 0.001 * s) for s in range(1, 21)]
    found = review(TrainingDiagnosis(0.25, 16, 0.025), 20, stalled,
                   {"relu": figures(dead=0.8125, width=16)}, kinds, profile)  # fmt: skip
    (dead,) = [v for v in found if v.kind == "dead_units"]
    assert dead.severity == "note"
    assert "No gradient reaches `c2` and the layers before it (exactly 0" in dead.message
    assert "straight-through estimator" in dead.message and "lower the learning" not in (
        dead.message
    )


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


def test_episodes_dead_problem_of_a_stalled_start_becomes_a_note_once_learning_goes_on():
    # f_bs2_bn s1: a BN CNN at batch 2, the dense layer 47% -> 67% dead at step 50 with the
    # loss down 8%; then flat at 59-62% while the loss fell to 0.3-0.6 and val reached 88-90%
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(86))}
    episodes = UnitEpisodes(0.25)
    (note,) = episodes.review(15, 0, [("fc", 0.47, 0.1)], {"fc": 0.47}, kinds, dead, 0.5)
    assert note.severity == "note"  # (a slow start told as a note first, as in the run)
    assert episodes.review(25, 0, [("fc", 0.67, 0.47)], {"fc": 0.67}, kinds, dead, 0.05) == []
    (problem,) = episodes.review(50, 0, [], {"fc": 0.67}, kinds, dead, 0.08)
    assert (problem.kind, problem.severity) == ("dead_units", "problem")
    assert episodes.review(100, 0, [], {"fc": 0.62}, kinds, dead, 0.25) == []  # not yet: +17
    # the loss 20 points of its start further down since (8% -> 45%): learning goes on
    (eased,) = episodes.review(150, 0, [], {"fc": 0.60}, kinds, dead, 0.45)
    assert said([eased]) == [("dead_units", "note", "gone")]
    assert eased.message.startswith("Dead units no longer hold learning back (step 150")
    assert "`fc` 60% dead (was 67%)" in eased.message and "Reported at step 50" in eased.message
    assert eased.figures == {"fc": 0.60, "progress": 0.45, "reported_step": 50}
    assert episodes.review(200, 0, [], {"fc": 0.61}, kinds, dead, 0.85) == []  # said once
    # the episode stays open: a further die-off is a problem again
    (again,) = episodes.review(250, 0, [("fc", 0.95, 0.61)], {"fc": 0.95}, kinds, dead, 0.85)
    assert (again.severity, again.change) == ("problem", "new")


def test_episodes_dead_problem_raised_before_progress_was_read_eases_too():
    # hunt 26: 78% of a dense layer dead at step 10 (up from 9%), before the loss's progress
    # could be read; the training loss then fell 99% to 100% train accuracy, and the
    # problem stood to the end of the run
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(100))}
    episodes = UnitEpisodes(0.25)
    (problem,) = episodes.review(10, 1, [("fc", 0.78, 0.09)], {"fc": 0.78}, kinds, dead, None)
    assert problem.severity == "problem"
    # the first log that reads the progress sets the bar (10% then: eased from 30% on)
    assert episodes.review(20, 2, [], {"fc": 0.79}, kinds, dead, 0.1) == []
    assert episodes.review(30, 3, [], {"fc": 0.79}, kinds, dead, 0.25) == []  # not yet
    (eased,) = episodes.review(60, 6, [], {"fc": 0.80}, kinds, dead, 0.9)
    assert said([eased]) == [("dead_units", "note", "gone")]
    assert "Reported at step 10 as a problem (10% progress at step 20, its first read)" in (
        eased.message
    )
    # a checkpoint keeps where the progress was read
    restored = UnitEpisodes(0.25)
    restored.load_state_dict(episodes.state_dict())
    assert restored.open["dead_units"].read_at == 20


def test_episodes_dead_problem_stays_while_the_share_grows_or_once_raised_late():
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(86))}
    episodes = UnitEpisodes(0.25)
    episodes.review(25, 0, [("fc", 0.47, 0.1)], {"fc": 0.47}, kinds, dead, 0.05)
    assert said(episodes.review(50, 0, [], {"fc": 0.67}, kinds, dead, 0.08))
    assert episodes.review(150, 0, [], {"fc": 0.80}, kinds, dead, 0.8) == []  # LARGE now
    # a collapse once the model had learnt (progress past SLOW when raised) stays a problem
    # while the loss keeps the level it had then
    episodes = UnitEpisodes(0.25)
    (late,) = episodes.review(60, 1, [("fc", 0.40, 0.08)], {"fc": 0.40}, kinds, dead, 0.8)
    assert late.severity == "problem"
    assert episodes.review(80, 1, [], {"fc": 0.40}, kinds, dead, 0.8) == []
    assert episodes.review(100, 1, [], {"fc": 0.40}, kinds, dead, 0.85) == []


def test_episodes_dead_problem_raised_late_is_a_note_once_the_loss_halved_since():
    # h_sequential s0: a BN CNN whose schedule raised SGD's rate 10x at step 32; the dense
    # layer 8% -> 43% dead at step 60 (loss down 80%), then 46% at step 80 with the loss
    # down 90%, 0.005 and 96% val by the end with the layer still 40% silent
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(55))}
    episodes = UnitEpisodes(0.25)
    (late,) = episodes.review(60, 1, [("fc", 0.43, 0.08)], {"fc": 0.43}, kinds, dead, 0.8)
    assert late.severity == "problem"
    (eased,) = episodes.review(80, 2, [], {"fc": 0.46}, kinds, dead, 0.9)
    assert said([eased]) == [("dead_units", "note", "gone")]
    assert "Reported at step 60 as a problem (80% progress then)" in eased.message
    # a site grown past LARGE keeps it a problem, whatever the loss
    episodes = UnitEpisodes(0.25)
    episodes.review(60, 1, [("fc", 0.43, 0.08)], {"fc": 0.43}, kinds, dead, 0.8)
    assert episodes.review(80, 2, [], {"fc": 0.8}, kinds, dead, 0.95) == []


def test_episodes_eased_problem_survives_a_checkpoint():
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(86))}
    episodes = UnitEpisodes(0.25)
    episodes.review(25, 0, [("fc", 0.47, 0.1)], {"fc": 0.47}, kinds, dead, 0.05)
    episodes.review(50, 0, [], {"fc": 0.67}, kinds, dead, 0.08)
    resumed = UnitEpisodes(0.25)
    resumed.load_state_dict(episodes.state_dict())
    assert resumed.open["dead_units"].progress == 0.08
    assert said(resumed.review(150, 0, [], {"fc": 0.6}, kinds, dead, 0.8)) == [
        ("dead_units", "note", "gone")
    ]


def test_episodes_state_keeps_fields_by_name_and_reads_an_earlier_releases_lists():
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(86))}
    episodes = UnitEpisodes(0.25)
    episodes.review(25, 0, [("fc", 0.47, 0.1)], {"fc": 0.47}, kinds, dead, 0.05)
    episodes.review(50, 0, [], {"fc": 0.67}, kinds, dead, 0.08)
    saved = episodes.state_dict()["open"]["dead_units"]
    assert saved == {"severity": "problem", "since": 50, "sites": {"fc": 0.67},
                     "progress": 0.08, "read_at": None}  # fmt: skip
    resumed = UnitEpisodes(0.25)  # a checkpoint of an earlier release: positional lists
    resumed.load_state_dict({"open": {"dead_units": ["problem", 50, {"fc": 0.67}, 0.08, None]}})
    assert resumed.open == episodes.open


def test_episodes_most_of_a_layer_silent_early_waits_a_log_and_eases_as_learning_goes_on():
    # h_cluttered s2 (hunt 15): a hard task, the dense head 37% -> 80% dead at step 20 with
    # the loss 2.39 -> 2.27 (5%); it fell 45% by the end and val went 20% -> 40%, as with
    # LeakyReLU everywhere
    episodes = UnitEpisodes(0.25)
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(103))}
    assert episodes.review(20, 0, [("fc", 0.8, 0.37)], {"fc": 0.8}, kinds, dead, 0.05) == []
    # the next log: the loss a new low by 3%+ (falling): a note, not a problem
    (note,) = episodes.review(40, 0, [], {"fc": 0.8}, kinds, dead, 0.09, falling=True)
    assert (note.kind, note.severity) == ("dead_units", "note")
    # not falling at the next log either: a problem, which eases once the loss has fallen
    # 20 points of its start further, the share not risen
    episodes = UnitEpisodes(0.25)
    assert episodes.review(20, 0, [("fc", 0.8, 0.37)], {"fc": 0.8}, kinds, dead, 0.05) == []
    assert said(episodes.review(40, 0, [], {"fc": 0.8}, kinds, dead, 0.06)) == [
        ("dead_units", "problem", "new")
    ]
    assert episodes.review(120, 1, [], {"fc": 0.8}, kinds, dead, 0.2) == []
    (eased,) = episodes.review(200, 2, [], {"fc": 0.82}, kinds, dead, 0.3)
    assert (eased.severity, eased.change) == ("note", "gone")
    assert "Dead units no longer hold learning back" in eased.message
