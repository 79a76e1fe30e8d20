import pytest

from lightning_cnnviz.core.schedule import Schedule, plan


def _steps(schedule, total):
    return [s for s in range(1, total + 1) if schedule.due_on_step(s, last=-1)]


def test_schedule_every_n_steps_logs_at_multiples_once():
    schedule = Schedule(every_n_steps=25)
    schedule.fit_to(100)  # an explicit schedule ignores the run's length
    assert _steps(schedule, 100) == [25, 50, 75, 100]
    assert not schedule.due_on_step(50, last=50)
    schedule.stretch(event_steps=100.0, budget=0.001)  # and the budget
    assert schedule.interval == 25


def test_schedule_first_chance_catches_a_passed_multiple():
    schedule = Schedule(every_n_steps=3)
    validations, last, logged = range(2, 12, 2), -1, []
    for step in validations:
        if schedule.due_on_step(step, last, first_chance=True):
            logged.append(step)
            last = step
    assert logged == [2, 4, 6, 10]


def test_schedule_epochs_and_checks():
    schedule = Schedule(every_n_epochs=2)
    assert [e for e in range(6) if schedule.due_on_epoch(e, step=10 * e, last=-1)] == [1, 3, 5]
    assert not schedule.due_on_step(10, last=-1) and schedule.next_step(10) is None
    with pytest.raises(ValueError, match="Set only one of"):
        Schedule.chosen(10, 2)
    assert Schedule.chosen(None, None).automatic


@pytest.mark.parametrize(
    ("total", "first_steps", "count"),
    [
        (30, [1, 2, 4, 6, 8], 16),
        (100, [3, 5, 10, 15], 21),
        (1_000, [30, 50, 100, 150], 21),
        (10_000, [50, 100, 200, 500, 1000], 23),
        (1_000_000, [50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 50000], 30),
    ],
)
def test_schedule_automatic_is_dense_early_then_fitted_to_the_run(total, first_steps, count):
    schedule = Schedule()
    schedule.fit_to(total)
    if total <= 10_000:
        steps = _steps(schedule, total)
    else:  # walk the schedule instead of asking every step
        steps, step = [], 0
        while (step := schedule.next_step(step)) <= total:
            steps.append(step)
    assert steps[: len(first_steps)] == first_steps
    assert len(steps) == count
    assert steps[0] <= min(50, max(1, 0.03 * total))
    # next_step walks the same steps as due_on_step
    walked, step = [], 0
    while (step := schedule.next_step(step)) <= min(total, 10_000):
        walked.append(step)
    assert walked == [s for s in steps if s <= 10_000]


def test_schedule_unknown_length_plans_a_default_run_and_keeps_its_interval():
    assert plan(float("inf")) == plan(None) == plan(-1) == (10, plan(10_000)[1])  # -1: unknown too
    schedule = Schedule()
    schedule.fit_to(float("inf"))
    assert schedule.due_on_step(1_000_000, last=-1) and schedule.next_step(1_000_000) == 1_000_500


def test_schedule_budget_stretches_the_steady_interval_on_its_grid():
    schedule = Schedule()
    schedule.fit_to(10_000)
    schedule.stretch(event_steps=0.1, budget=0.01)  # needs 10 steps apart: planned 500 is fine
    assert schedule.interval == 500
    schedule.stretch(event_steps=2.0, budget=0.002)  # needs 1,000 steps apart
    assert schedule.interval == 1000
    steps = _steps(schedule, 10_000)
    assert steps == [50, 100, 200, *range(1000, 10_001, 1000)]  # the early ones stay
    schedule.stretch(event_steps=20.0, budget=0.002)  # 10,000 apart would leave 1 event
    assert schedule.interval == 1500 and len(_steps(schedule, 10_000)) - 3 >= 6
    schedule.stretch(event_steps=2.0, budget=0.002)  # needs 1,000 apart, but only just
    assert schedule.interval == 1500  # not clearly cheaper: no back and forth on noise
    schedule.stretch(event_steps=1.5, budget=0.002)  # needs 750: fits 1,000 comfortably
    assert schedule.interval == 1000
    restored = Schedule()
    restored.load_state_dict(schedule.state_dict())
    restored.fit_to(10_000)
    assert _steps(restored, 10_000) == steps


@pytest.mark.parametrize(
    ("max_time", "steps", "first"),
    [(None, 12_000, 50), (600, 12_000, 10), (600, 9_600, 10), (600, 30, 1), (None, -1, 10)],
)
def test_schedule_a_time_limit_plans_an_early_first_event(max_time, steps, first):
    # setups hunts 46-47: `max_time` with `max_epochs` 800-1000 planned 9,600-12,000 steps
    # (Lightning sizes the run by its epochs alone); the clock stopped it at 100-277: 1-3
    # events
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from lightning_cnnviz.core.monitor_events import run_length

    timer = Timer(duration={"seconds": max_time} if max_time else None)
    run = SimpleNamespace(estimated_stepping_batches=steps, callbacks=[timer])
    assert run_length(run) == (steps, max_time is not None)
    schedule = Schedule()
    schedule.fit_to(*run_length(run))
    assert schedule.first == first
    stopped = _steps(schedule, 100)  # the clock stops the run at step 100
    assert len(stopped) >= (4 if max_time else 2), stopped
    if max_time and steps > 10_000:  # past the unknown length's plan: that plan
        assert (schedule.first, schedule.steady) == plan(None)
        # ...and the budget stretches it as far as an unknown length's, no further
        # (setups hunt 48: to 5,500 steps against 1,500)
        unknown = Schedule()
        unknown.fit_to(None)
        for plans in (schedule, unknown):
            plans.stretch(event_steps=1e6, budget=0.01)
        assert schedule.interval == unknown.interval == 3 * plan(None)[1]
