import time

from lightning_cnnviz.core.budget import Budget, cost_text
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


def test_budget_leaves_a_validation_run_out_of_the_step_time(monkeypatch):
    clock = iter([0.0, 1.0, 9.0, 10.0])  # validation runs between 1 s and 8 s
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    budget = Budget(share=0.01)
    budget.step_ended()
    budget.step_ended()
    budget.pause()  # on_validation_start
    budget.step_ended()  # 8 s since the last step: not a step's time
    assert budget.step_seconds == 1.0
    budget.step_ended()
    assert budget.step_seconds == 1.0


def test_budget_counts_the_sink_threads_work_in_an_events_cost():
    schedule, budget = Schedule(), Budget(share=0.001)
    schedule.fit_to(10_000)
    budget.step_seconds = 0.01
    budget.add(0.5)
    budget.event_ended(schedule)  # the first event
    budget.add(0.005)
    budget.add_background(0.005)  # its drawing on the sink's thread
    budget.event_ended(schedule)
    assert abs(budget.event_steps - 1.0) < 1e-9 and schedule.interval == 1000


def test_monitor_budget_counts_its_background_jobs(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_cnnviz import FeatureMapMonitor
    from lightning_cnnviz.reference import MNISTClassifier, SyntheticDigitsDataModule

    monitor = FeatureMapMonitor(every_n_steps=2)
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=4, logger=TensorBoardLogger(tmp_path),
                        callbacks=[monitor], enable_progress_bar=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    trainer.fit(
        MNISTClassifier(), SyntheticDigitsDataModule(train_size=64, val_size=32, batch_size=8)
    )
    assert monitor.events == 2
    assert monitor.budget.background > 0  # the grids were drawn on the sink's thread


def test_budget_cost_said_in_the_summary_where_the_monitors_cost_more_than_training(
    tmp_path, monkeypatch
):
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_cnnviz import KernelMonitor
    from lightning_cnnviz.core import budget
    from lightning_cnnviz.reference import MNISTClassifier, SyntheticDigitsDataModule
    from tests.tb import events, texts

    class Slow(KernelMonitor):
        def log_event(self, trainer, pl_module):
            time.sleep(0.3)  # far more than a training step of this model
            super().log_event(trainer, pl_module)

    monkeypatch.setattr(budget, "SAID_SECONDS", 1.0)
    for monitor, said in ((Slow(), True), (KernelMonitor(), False)):
        logger = TensorBoardLogger(tmp_path, name=str(said))
        trainer = L.Trainer(max_steps=12, logger=logger, callbacks=[monitor],
                            enable_progress_bar=False, enable_checkpointing=False,
                            num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
        data = SyntheticDigitsDataModule(train_size=96, val_size=32, batch_size=8)
        trainer.fit(MNISTClassifier(), data)
        (summary,) = texts(events(logger.log_dir), "cnnviz/summary")
        assert ("Cost: the monitors spent" in summary) is said
        if said:
            spent = monitor.budget.spent
            assert monitor.events >= 4 and spent >= 0.3 * monitor.events
            assert f"Slow {spent:.1f} s in {monitor.events} events" in summary


def test_budget_cost_text_on_one_core_counts_the_sinks_drawing_in_the_slowdown():
    # held out (setups hunt 22): on one core the sink's drawing ran inside the training
    # time it was compared with: "1.3x its own 26.7 s" of a run made 4.4x slower (bare 14.1 s)
    costs = [("GradCAMMonitor", 20.0, 10.0, 8), ("OverfittingMonitor", 15.7, 5.1, 2)]
    two = cost_text(costs, wall=62.4, share=0.01)
    assert "1.3x its own 26.7 s of training" in two and "15.1 s drawing" in two
    one = cost_text(costs, wall=62.4, share=0.01, one_core=True)
    assert "3.1x its own 11.6 s of training" in one
    assert "takes turns with training on this run's one CPU core (4.4x in all)" in one


def test_budget_cost_text_tells_no_ratio_where_training_time_cannot_be_told_apart():
    # setups hunt 23: on one core the monitors' seconds overlapped with the sink's, the
    # fit's own time came out below zero: "6741224973.0x its own 0.0 s of training"
    costs = [("GradCAMMonitor", 5.2, 1.7, 8), ("KernelMonitor", 1.5, 0.6, 8)]
    text = cost_text(costs, wall=9.0, share=0.01, one_core=True)
    assert "6.7 s on the training thread in this fit of 9.0 s" in text
    assert "2.3 s drawing on the sink's thread" in text and "(the two overlap)" in text
    assert "x its own" not in text and "in all)" not in text
    assert "GradCAMMonitor 5.2 s in 8 events, KernelMonitor 1.5 s in 8 events" in text
