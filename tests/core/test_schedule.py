import pytest

from lightning_cnnviz.core.schedule import Schedule


def test_schedule_every_n_steps_logs_at_multiples_once():
    schedule = Schedule(every_n_steps=25)
    due = [s for s in range(0, 101) if schedule.due_on_step(s, last=-1)]
    assert due == [25, 50, 75, 100]
    assert not schedule.due_on_step(50, last=50)


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
    assert not schedule.due_on_step(10, last=-1)
    with pytest.raises(ValueError, match="Set only one of"):
        Schedule.chosen(10, 2, default=Schedule(every_n_steps=200))
    assert Schedule.chosen(None, None, default=Schedule(every_n_steps=200)).every_n_steps == 200
