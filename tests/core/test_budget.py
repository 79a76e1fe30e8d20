import time

from lightning_cnnviz.core.budget import Budget
from lightning_cnnviz.core.schedule import Schedule


def test_budget_measures_steps_without_the_monitors_own_work(monkeypatch):
    clock = iter([0.0, 1.0, 2.5, 3.0])  # batch ends at 0, 1, 2.5 and 3 s
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    budget = Budget(share=0.01)
    budget.step_ended()
    budget.step_ended()
    assert budget.step_seconds == 1.0
    budget.add(0.5)  # our event took 0.5 s of the next 1.5 s
    budget.step_ended()
    assert budget.step_seconds == 1.0  # the step itself still took 1 s
    budget.step_ended()
    assert abs(budget.step_seconds - 0.95) < 1e-9  # running mean with a 0.5 s step


def test_budget_ignores_the_first_event_and_stretches_after_later_ones():
    schedule, budget = Schedule(), Budget(share=0.001)
    schedule.fit_to(10_000)
    budget.step_seconds = 0.01
    budget.add(5.0)  # the first event: call-site tracing, probe drawing
    budget.event_ended(schedule)
    assert schedule.interval == 500 and budget.event_steps is None
    budget.add(0.01)  # one training step per event: 1,000 steps apart at 0.1%
    budget.event_ended(schedule)
    assert abs(budget.event_steps - 1.0) < 1e-9 and schedule.interval == 1000
