"""A slow start's ``dead_units`` problem ended by learning the training loss hides.

Held-out hunt 127: 60% random labels, a no-BN CNN under Adam 3e-3, the loss at chance for
about 60 steps, then val 11% -> 87%; `body.6` 50-66% silent from step 27 to the end. Its
problem at step 50, "the loss has stayed at its chance level ... nothing has been learnt",
stood as the run's only problem: the random labels hold the training loss near its start,
so the loss alone never eased it. Synthetic series mirroring that run, fed to
``TrainingDiagnosis`` log by log as the monitor does, with the probe read in eval mode.
"""

import math

import torch

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from tests.activations.series import figures, info, said

LOGS = (10, 27, 50, 100, 150, 200, 250, 300, 350, 400)


def _run(dead, acc, probe_loss, learns=True):
    """The verdicts of 400 steps; the loss falls 13% from step 60 where the model ``learns``."""
    g = torch.Generator().manual_seed(0)
    diagnosis, out = TrainingDiagnosis(0.25, 16, 0.025), []
    kinds = {"body.2": "rectifier", "body.6": "rectifier"}
    sites = {site: info(kind) for site, kind in kinds.items()}
    for step in range(1, 401):
        fall = 0.3 * (step - 60) / 340 if learns and step > 60 else 0.0
        noise = 1 + 0.02 * (2 * float(torch.rand(1, generator=g)) - 1)
        diagnosis.loss.add(step, torch.tensor((math.log(10) - fall) * noise))
        if step in LOGS:
            chance = (10, 2.31) if diagnosis.wants_chance() else None
            figs = {"body.2": figures(0.0, width=16), "body.6": figures(dead(step), width=32)}
            out += diagnosis.review(step, step // 63, figs, sites, [], list, chance,
                                    probe_acc=acc(step), probe_loss=probe_loss(step))  # fmt: skip
    return out + diagnosis.conclude(step=400, epoch=6)


def _acc(step):
    return 0.125 if step <= 60 else min(0.875, 0.125 + (step - 60) / 300)


def _probe_loss(step):
    return 2.31 if step <= 60 else max(1.2, 2.31 - (step - 60) / 250)


def test_dead_units_problem_at_chance_eases_once_the_probe_shows_learning():
    verdicts = _run(lambda s: 0.62 if s >= 27 else 0.0, _acc, _probe_loss)
    assert said(verdicts) == [("dead_units", "problem", "new"), ("dead_units", "note", "gone")]
    problem, eased = verdicts
    assert "nothing has been learnt" in problem.message
    # at step 150 the probe's cross-entropy is 17% below ln 10 (short of 20%); at 200, 24%
    assert eased.message.startswith(
        "Dead units no longer hold learning back (step 200, epoch 3): learning started after "
        "it was reported: 59% of the probe images are right and their cross-entropy is 24% "
        "below the chance level (eval mode), the training loss 6% below its start (a floor "
        "holds it up"
    )
    assert "have not grown (`body.6` 62% dead (was 62%))" in eased.message
    assert "Reported at step 50 as a problem" in eased.message
    assert eased.figures["reported_step"] == 50
    assert round(eased.figures["probe_acc"], 2) == 0.59
    assert round(eased.figures["probe_fall"], 2) == 0.24


def test_dead_units_problem_at_chance_eases_though_the_share_grows_while_the_model_learns():
    # the known variant: the silent share grows (53% -> 82%) while val climbs
    verdicts = _run(lambda s: 0.0 if s < 27 else min(0.9, 0.5 + (s - 27) / 400), _acc, _probe_loss)
    assert said(verdicts) == [("dead_units", "problem", "new"), ("dead_units", "note", "gone")]
    eased = verdicts[1]
    assert "learning started after it was reported" in eased.message
    assert "have grown, yet the model learnt past them (`body.6` 90% dead (was 56%))" in (
        eased.message
    )


def test_dead_units_problem_at_chance_stands_while_the_probe_stays_at_chance():
    # the same script's seed that never learns: the problem is right to the end
    verdicts = _run(lambda s: 0.62 if s >= 27 else 0.0, lambda s: 0.125, lambda s: 2.32, False)
    assert said(verdicts) == [("dead_units", "problem", "new")]
    assert "nothing has been learnt" in verdicts[0].message


def test_dead_units_rise_after_the_probe_learnt_is_no_stall_problem():
    # a seed at 50% val: the probe's accuracy short of "learnt well", its cross-entropy 24%
    # below ln 10 and the training loss 10% below its start; `body.6` 34% -> 53% at step 400
    # was told "Units that never activate ... stop learning" as a problem again
    verdicts = _run(
        lambda s: 0.0 if s < 27 else (0.34 if s < 300 else 0.53),
        lambda s: min(0.5, _acc(s)),
        _probe_loss,
    )
    assert said(verdicts) == [("dead_units", "problem", "new"), ("dead_units", "note", "gone")]
    assert "50% of the probe images are right" in verdicts[1].message
