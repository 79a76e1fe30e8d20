"""Dead and dormant units as episodes: told, held a log, eased to a note, told again as new.

Synthetic loss series and figures, fed to ``TrainingDiagnosis`` log by log as the
monitor does; the figures mirror the failure-recall hunt's runs they came from.
"""

import torch

from lightning_cnnviz.activations.dead_rules import dead_reason
from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.episodes import UnitEpisodes
from tests.activations.series import figures, flat, info, review, said


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


def test_episodes_a_stall_waits_until_the_slow_start_is_over():
    # hunt 82: a plain CNN under Adam 3e-3, 19-31% of a layer silent at step 30 of an
    # 80-step run at chance since its start, told a problem; 46% val by step 80
    episodes, kinds = UnitEpisodes(0.25), {"conv": "rectifier"}
    dead = {"conv": list(range(10))}
    for step in (20, 30):  # held: before step SETTLED a stall may be a slow start
        assert episodes.review(step, 0, [("conv", 0.31, 0.2)], {"conv": 0.31}, kinds, dead,
                               0.02) == []  # fmt: skip
    (verdict,) = episodes.review(40, 0, [], {"conv": 0.31}, kinds, dead, 0.03)
    assert (verdict.kind, verdict.severity) == ("dead_units", "problem")
    # the learning resumed by then: a note
    episodes = UnitEpisodes(0.25)
    assert episodes.review(30, 0, [("conv", 0.31, 0.2)], {"conv": 0.31}, kinds, dead, 0.02) == []
    (verdict,) = episodes.review(40, 0, [], {"conv": 0.31}, kinds, dead, 0.3)
    assert verdict.severity == "note"


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


def test_episodes_most_of_a_layer_silent_before_the_loss_can_be_read_waits_if_it_moves():
    # hunt 72: a 3136 -> 256 dense head 80% silent at step 12 under SGD 0.1 with momentum,
    # too few steps to read the loss's progress (down 9% over them), told a problem; 96% at
    # step 20 with the loss falling, 96.8% val at the end
    episodes = UnitEpisodes(0.25)
    kinds, dead = {"fc": "rectifier"}, {"fc": list(range(206))}
    alert = [("fc", 0.8, None)]
    assert episodes.review(12, 0, alert, {"fc": 0.8}, kinds, dead, None, early_fall=0.09) == []
    (note,) = episodes.review(20, 0, [], {"fc": 0.96}, kinds, dead, 0.19, falling=True)
    assert (note.kind, note.severity) == ("dead_units", "note")
    # a loss that has not moved over those steps (a clamp, a loss scaled 1000x): at once
    for fall in (None, 0.0, -0.5):
        found = UnitEpisodes(0.25).review(12, 0, alert, {"fc": 0.8}, kinds, dead, None,
                                          early_fall=fall)  # fmt: skip
        assert said(found) == [("dead_units", "problem", "new")]
    # still not falling at the next log: a problem then
    episodes = UnitEpisodes(0.25)
    assert episodes.review(12, 0, alert, {"fc": 0.8}, kinds, dead, None, early_fall=0.09) == []
    assert said(episodes.review(20, 0, [], {"fc": 0.96}, kinds, dead, 0.1)) == [
        ("dead_units", "problem", "new")
    ]
