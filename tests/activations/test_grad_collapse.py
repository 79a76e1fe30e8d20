"""A layer that dies and takes the gradients before it: the cause of not learning."""

import math

import torch

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.core.findings import Finding, report
from lightning_cnnviz.core.root_causes import earlier_cause
from tests.activations.series import figures, info


def _run(collapse: bool) -> list:
    """Held-out hunt 118's figures: the loss at ln 10 (a 2.5% dip and batch noise inside the
    chance band),
    `relu` 0% -> 88% -> 97% -> 100% dead; the convolutions' gradients gone with it, or not."""
    diagnosis, said = TrainingDiagnosis(0.25, 16, 0.025), []
    noise = torch.randn(80, generator=torch.Generator().manual_seed(0)) * 0.025  # batch noise
    sites = {"relu": info("rectifier")}
    for log, dead in ((10, 0.0), (20, 0.88), (40, 0.97), (60, 1.0), (80, 1.0)):
        for s in range(log - (9 if log == 10 else 19), log + 1):
            level = 1.01 if s <= 10 else 0.985  # near ln 10 throughout: at chance
            diagnosis.loss.add(s, torch.tensor(math.log(10) * level * (1 + float(noise[s - 1]))))
        chance = (10, 2.303) if diagnosis.wants_chance() else None
        # 1/40 of the first reading at the die-off, 1e-3 with 3% of the units left, then 0
        gone = {10: 1.0, 20: 1 / 40, 40: 1e-3}.get(log, 0.0) if collapse else 1.0
        profile = [("conv1", 3e-4 * gone), ("conv2", 5e-4 * gone), ("fc", 2e-2 * max(gone, 0.01))]
        said += diagnosis.review(log, 0, {"relu": figures(dead=dead)}, sites, profile,
                                 lambda: [], chance)  # fmt: skip
    return [v for v in said if v.kind == "dead_units"]


def test_grad_collapse_dead_layer_is_the_cause_of_not_learning():
    told = _run(collapse=True)
    assert [v.severity for v in told] == ["problem"]  # no "learning goes on" note first
    (problem,) = told
    assert "`relu` went silent and took the gradient of the layers before it" in problem.message
    assert "`conv1` ... `conv2` at 2.5e-02x of their first reading" in problem.message
    assert "use LeakyReLU" in problem.message and "label" not in problem.message
    assert problem.figures["gradient_collapse"] == 0.025
    # not learning, told later, names it as the problem reported first
    run = type("Run", (), {})()
    report(run, Finding("activations", problem.kind, 20, 0, problem.message, problem.figures))
    assert "(step 20, `dead_units`): a layer's units died" in earlier_cause(run, "not_learning")


def test_grad_collapse_gradients_still_flowing_keep_the_data_reading():
    # shuffled labels: the units die while every layer keeps its gradient: the data first
    told = _run(collapse=False)
    assert [v.severity for v in told] == ["problem"]
    assert "more likely a consequence than the cause" in told[0].message
    assert "gradient_collapse" not in told[0].figures
    run = type("Run", (), {})()
    report(run, Finding("activations", "dead_units", 40, 0, told[0].message, told[0].figures))
    assert earlier_cause(run, "not_learning") == ""
