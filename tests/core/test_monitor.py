import time

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz import KernelMonitor
from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.core.sinks import Sink
from tests.contract.registry import CaptureOnlyMonitor
from tests.contract.zoo import BNDropout, ZooData
from tests.tb import events, texts


class Recorder(CaptureOnlyMonitor):
    def __init__(self, *args, fail_at=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = []
        self.fail_at = fail_at

    def log_event(self, trainer, pl_module):
        assert not trainer.sanity_checking
        self.steps.append(trainer.global_step)
        if trainer.global_step == self.fail_at:
            raise RuntimeError("planted monitor failure")
        super().log_event(trainer, pl_module)


def run(tmp_path, monitor, **kwargs):
    L.seed_everything(0, verbose=False)
    model = BNDropout()
    args = dict(
        default_root_dir=tmp_path,
        max_epochs=3,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=monitor if isinstance(monitor, list) else [monitor],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    args.update(kwargs)
    trainer = L.Trainer(**args)
    trainer.fit(model, datamodule=ZooData())
    return trainer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every_n_steps": 0}, "`every_n_steps` must be a positive integer, got 0"),
        ({"every_n_steps": -5}, "`every_n_steps` must be a positive integer, got -5"),
        ({"every_n_epochs": 1.5}, "`every_n_epochs` must be a positive integer, got 1.5"),
        ({"every_n_steps": 3, "every_n_epochs": 1}, "Set only one of `every_n_steps`"),
        ({"num_samples": 0}, "`num_samples` must be a positive integer, got 0"),
        ({"layers": []}, "`layers` must be 'auto', a pattern or a non-empty list"),
        ({"layers": 3}, "got 3"),
        ({"layers": ""}, "got ''"),  # setups hunt 22: an unset config variable, said at setup
        ({"layers": ["conv1", " "]}, r"got \['conv1', ' '\]"),
        ({"tag_prefix": None}, "`tag_prefix` must be a string, got None"),
    ],
)
def test_monitor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CaptureOnlyMonitor(**kwargs)


def test_monitor_schedule_follows_global_step_across_epochs(tmp_path):
    # 8 batches per epoch, accumulation 3: optimizer steps do not align with epochs or batch_idx
    monitor = Recorder(every_n_steps=2, num_samples=4)
    trainer = run(tmp_path, monitor, accumulate_grad_batches=3, num_sanity_val_steps=2)
    assert trainer.global_step == 9
    assert monitor.steps == [2, 4, 6, 8]
    acc = events(tmp_path / "tb")
    assert [e.step for e in acc.Scalars("capture_only/conv1/mean")] == [2, 4, 6, 8]
    assert len(texts(acc, "cnnviz/layers")) == 1
    assert "`conv1` (Conv2d)" in texts(acc, "cnnviz/layers")[0]


def test_monitor_every_n_epochs(tmp_path):
    monitor = Recorder(every_n_epochs=2, num_samples=4)
    run(tmp_path, monitor)
    assert monitor.steps == [16]  # end of the second epoch, 8 steps each


def test_monitor_failure_warns_once_and_steps_aside(tmp_path):
    monitor = Recorder(every_n_steps=2, num_samples=4, fail_at=4)
    with pytest.warns(
        UserWarning, match="Recorder failed and steps aside.*planted monitor failure"
    ):
        trainer = run(tmp_path, monitor)
    assert monitor.steps == [2, 4] and monitor.disabled
    assert trainer.global_step == 24, "training went on"


def test_monitor_strict_raises(tmp_path):
    monitor = Recorder(every_n_steps=2, num_samples=4, fail_at=2, strict=True)
    with pytest.raises(RuntimeError, match="planted monitor failure"):
        run(tmp_path, monitor)


def test_monitor_unknown_layer_raises_in_setup(tmp_path):
    monitor = CaptureOnlyMonitor(layers=["conv1", "nope.*"])
    with pytest.raises(ValueError, match=r"'nope\.\*' matches no module.*'conv1' \(Conv2d\)"):
        run(tmp_path, monitor)


def test_monitor_state_dict_round_trip(tmp_path):
    monitor = Recorder(every_n_steps=4, num_samples=6, seed=5)
    run(tmp_path, monitor, max_epochs=1)
    state = monitor.state_dict()
    assert state["last_logged_step"] == 8 and len(state["probe_indices"]["val"]) == 6
    fresh = Recorder(every_n_steps=4, num_samples=6, seed=99)
    fresh.load_state_dict(state)
    assert fresh.seed == 5 and fresh.last_logged_step == 8
    assert fresh._probe_indices == monitor._probe_indices


def test_monitor_probe_is_class_balanced_and_leaves_global_rng(tmp_path):
    monitor = Recorder(every_n_steps=4, num_samples=8)
    trainer = run(tmp_path, monitor, max_epochs=1)
    state = torch.get_rng_state()
    probe = monitor.probe(trainer, "val")
    assert torch.equal(torch.get_rng_state(), state)
    assert sorted(probe.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_monitor_steps_aside_under_fast_dev_run(tmp_path):
    monitor = Recorder(every_n_steps=1, num_samples=4)
    with pytest.warns(UserWarning, match="step aside"):
        run(tmp_path, monitor, fast_dev_run=2, logger=None)
    assert monitor.steps == []


def test_monitor_state_key_distinguishes_instances():
    a, b = CaptureOnlyMonitor(tag_prefix="a/"), CaptureOnlyMonitor(tag_prefix="b/")
    assert a.state_key != b.state_key
    assert isinstance(a, Monitor)
    # the automatic schedule keeps the key of older checkpoints; an explicit one is in it
    assert "every_n_steps" not in a.state_key
    assert CaptureOnlyMonitor(every_n_steps=20).state_key != CaptureOnlyMonitor().state_key


def test_monitor_of_one_type_twice_on_one_tag_prefix_says_what_to_do(tmp_path):
    # held out: a preset's monitor plus a denser one of the same type crashed in
    # `Trainer()` with Lightning's "more than one stateful callback" error
    twins = [Recorder(), Recorder(every_n_steps=2)]
    with pytest.raises(ValueError, match="give the second one a `tag_prefix` of its own"):
        run(tmp_path, twins, max_epochs=1)
    apart = [Recorder(), Recorder(every_n_steps=2, tag_prefix="dense/")]
    trainer = run(tmp_path, apart, max_epochs=1)
    assert apart[0].steps and apart[1].steps == list(range(2, trainer.global_step + 1, 2))
    # the run's summary is no one monitor's: it keeps no prefix they do not all share
    # (setups hunt 63: it went under the last monitor's `second/cnnviz/summary`)
    acc = events(tmp_path / "tb" / "version_1")
    (summary,) = texts(acc, "cnnviz/summary")
    assert "Recorder" in summary and "dense/cnnviz/summary" not in acc.Tags()["tensors"]
    same = [Recorder(tag_prefix="a/"), KernelMonitor(tag_prefix="a/")]
    run(tmp_path, same, max_epochs=1)
    acc = events(tmp_path / "tb" / "version_2")
    assert texts(acc, "a/cnnviz/summary")
    (layers,) = texts(acc, "a/cnnviz/layers")[-1:]  # the run's selection, as its summary
    assert "**KernelMonitor**" in layers and "cnnviz/layers" not in acc.Tags()["tensors"]


class BackgroundRecorder(Recorder):
    """Renders on the sink's thread; the job at ``fail_at`` raises there."""

    def log_event(self, trainer, pl_module):
        super().log_event(trainer, pl_module)
        step = trainer.global_step

        def render():
            if step == self.fail_at_background:
                raise RuntimeError("planted background failure")
            self.sink.image(self.tag("drawn"), torch.full((3, 4, 4), step, dtype=torch.uint8), step)

        self.in_background(render)
        if step == self.fail_at_background:
            self.sink.wait()  # the failed job has run: the next event must see it


def test_monitor_in_background_writes_and_times_jobs(tmp_path):
    monitor = BackgroundRecorder(every_n_steps=4, num_samples=4)
    monitor.fail_at_background = None
    trainer = run(tmp_path, monitor)
    acc = events(tmp_path / "tb")
    assert [e.step for e in acc.Images("capture_only/drawn")] == [4, 8, 12, 16, 20, 24]
    assert monitor.sink is Sink.of(trainer) and monitor.sink.busy_seconds > 0


def test_monitor_in_background_failure_steps_aside_at_next_event(tmp_path):
    monitor = BackgroundRecorder(every_n_steps=4, num_samples=4)
    monitor.fail_at_background = 8
    with pytest.warns(UserWarning, match="failed and steps aside.*planted background failure"):
        trainer = run(tmp_path, monitor)
    assert monitor.disabled and trainer.global_step == 24, "training went on"
    # the failure is seen at the next event (12), before it logs anything
    assert monitor.steps == [4, 8]
    assert [e.step for e in events(tmp_path / "tb").Images("capture_only/drawn")] == [4]


def test_monitor_in_background_failure_raises_when_strict(tmp_path):
    monitor = BackgroundRecorder(every_n_steps=4, num_samples=4, strict=True)
    monitor.fail_at_background = 24  # the last event: raised by the flush at the end of fit
    with pytest.raises(RuntimeError, match="planted background failure"):
        run(tmp_path, monitor)


class Slow(Recorder):
    """Every event costs `seconds` on the training thread."""

    def __init__(self, seconds, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds

    def log_event(self, trainer, pl_module):
        time.sleep(self.seconds)
        super().log_event(trainer, pl_module)


def test_monitor_automatic_schedule_logs_early_in_a_short_run(tmp_path):
    monitor = Recorder()  # no schedule given: the automatic one
    trainer = run(tmp_path, monitor, max_epochs=4)  # 8 batches per epoch: 32 steps
    assert trainer.global_step == 32 and monitor.schedule.automatic
    assert monitor.steps[:2] == [1, 2]  # the first event in the first 3% (at least step 1)
    assert len(monitor.steps) >= 1 + 6  # the budget leaves at least 6 steady events
    logged = {e.step for e in events(tmp_path / "tb").Scalars(monitor.tag("conv1", "mean"))}
    assert sorted(logged) == monitor.steps


def test_monitor_budget_stretches_the_schedule_of_a_slow_monitor(tmp_path):
    cheap, slow = Recorder(tag_prefix="cheap/", budget=1.0), Slow(0.05, tag_prefix="slow/")
    run(tmp_path, [cheap, slow], max_epochs=-1, max_steps=2000)
    assert cheap.schedule.interval == 100  # planned for 2,000 steps: 20 steady events
    assert cheap.steps[:2] == slow.steps[:2] == [50, 100]  # the first event, then the grid
    # a slow event costs many steps of this tiny model: stretched as far as the floor allows
    assert slow.schedule.interval == 300 == 100 * slow.schedule.max_factor
    late = [s for s in slow.steps if s > 100]  # stretched after its second event
    assert late == list(range(300, 2001, 300)) and len(late) >= 6
    assert cheap.steps == [50, *range(100, 2001, 100)]
    assert slow.state_dict()["schedule"] == {"factor": 3}


class NoStep(BNDropout):
    """Manual optimisation whose ``training_step`` forgets ``opt.step()``."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.manual_backward(loss)  # ... and no `self.optimizers().step()`


def test_monitor_summary_tells_a_fit_whose_optimiser_never_steps(tmp_path, caplog):
    L.seed_everything(0, verbose=False)
    monitor = Recorder()
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=2, logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[monitor], enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="No optimiser step in"):
        trainer.fit(NoStep(), datamodule=ZooData())
    assert trainer.global_step == 0 and monitor.events == 0
    (finding,) = [f for f in findings_of(trainer) if f.kind == "no_optimizer_step"]
    batches = trainer.fit_loop.epoch_loop.batch_progress.total.completed
    assert finding.severity == "problem" and finding.figures["batches"] == batches >= 10
    (check,) = checks_of(trainer).values()
    assert check.why == f"never logged: the optimiser took no step in {batches} training batches"
    (summary,) = texts(events(tmp_path / "tb" / "version_0"), "cnnviz/summary")
    assert "1 problem(s)" in summary and "[cnnviz/no_optimizer_step]" in summary


def test_monitor_summary_told_though_lightning_is_quieted(tmp_path, caplog):
    # setups hunt 24: a script setting the `lightning.pytorch` logger to ERROR (to hide
    # "GPU available: ...") lost the end-of-fit summary with it
    import logging

    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=4, logger=False, callbacks=[KernelMonitor()],
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    try:
        with caplog.at_level(logging.INFO):
            trainer.fit(BNDropout(), datamodule=ZooData())
    finally:
        quiet.setLevel(level)
    told = [r.getMessage() for r in caplog.records if r.name == "lightning_cnnviz"]
    (summary,) = [m for m in told if "Checks that ran" in m]
    assert summary.startswith("lightning-cnnviz: no problems found by the checks that ran.")
    assert not [r for r in caplog.records if r.name.startswith("lightning.pytorch")]


@pytest.mark.parametrize(("given", "kept"), [("run1", "run1/"), ("/run1/", "run1/"),
                                             ("a/b", "a/b/"), ("/", ""), ("", "")])  # fmt: skip
def test_monitor_tag_prefix_is_a_section_of_its_own(given, kept):
    # setups hunt 19: "run1" wrote "run1activations/...", "/" a section with no name
    monitor = KernelMonitor(tag_prefix=given)
    assert monitor.tag_prefix == kept
    assert monitor.tag("w") == f"{kept}kernels/w"


def test_monitor_pickles_after_a_fit_without_the_fits_objects(tmp_path):
    # setups hunt 21: after fit, pickling any monitor raised "cannot pickle
    # 'weakref.ReferenceType' object" (a k-fold loop handing the list to a new process)
    import pickle

    monitor = KernelMonitor(every_n_steps=2, seed=5)
    trainer = L.Trainer(max_steps=4, logger=TensorBoardLogger(tmp_path), callbacks=[monitor],
                        enable_progress_bar=False, enable_checkpointing=False,
                        limit_val_batches=0)  # fmt: skip
    trainer.fit(BNDropout(), ZooData())
    again = pickle.loads(pickle.dumps(monitor))
    assert (again.seed, again.every_n_steps, again.events) == (5, 2, monitor.events) == (5, 2, 2)
    assert again._trainer_ref is None and again._sink is None
    assert monitor._trainer_ref is trainer  # the original keeps its run


def test_monitor_pickles_after_a_fit_without_the_model(tmp_path):
    # setups hunt 49: a pickle after a fit held the whole model (Lightning's `log` and
    # `log_dict` on every callback; ActivationMonitor's recorder): 3.4 MB for a 3.2 MB model
    import pickle

    from lightning_cnnviz.presets import callbacks

    model = BNDropout()
    model.unused = torch.nn.Linear(1000, 1000)  # 4 MB of weights
    monitors = callbacks("standard")
    trainer = L.Trainer(max_steps=4, logger=TensorBoardLogger(tmp_path), callbacks=list(monitors),
                        enable_progress_bar=False, enable_checkpointing=False,
                        limit_val_batches=0)  # fmt: skip
    trainer.fit(model, ZooData())
    for monitor in monitors:
        assert len(pickle.dumps(monitor)) < 500_000, type(monitor).__name__
    again = pickle.loads(pickle.dumps(monitors))
    L.Trainer(max_steps=8, logger=TensorBoardLogger(tmp_path, version=1), callbacks=list(again),
              enable_progress_bar=False, enable_checkpointing=False,
              limit_val_batches=0).fit(BNDropout(), ZooData())  # fmt: skip
    logged = {type(m).__name__: m.events - b.events for m, b in zip(again, monitors, strict=True)}
    assert min(v for k, v in logged.items() if k != "OverfittingMonitor") > 0  # no validation


def test_monitor_says_no_training_batch_ran_where_none_did(tmp_path):
    # setups hunt 21: 20 items, batch 32, drop_last: "shorter than its first scheduled event"
    from torch.utils.data import DataLoader, TensorDataset

    monitor = KernelMonitor()
    data = TensorDataset(torch.randn(20, 3, 16, 16), torch.randint(0, 4, (20,)))
    trainer = L.Trainer(max_epochs=1, logger=TensorBoardLogger(tmp_path), callbacks=[monitor],
                        enable_progress_bar=False, enable_checkpointing=False,
                        limit_val_batches=0)  # fmt: skip
    trainer.fit(BNDropout(), DataLoader(data, batch_size=32, drop_last=True))
    (check,) = checks_of(trainer).values()
    assert not check.ran and check.why.startswith("never logged: no training batch ran")
    assert "`drop_last=True`" in check.why
    # setups hunt 22: `limit_train_batches=0` named as given, not a loader that yields none
    monitor = KernelMonitor()
    trainer = L.Trainer(max_epochs=1, logger=TensorBoardLogger(tmp_path), callbacks=[monitor],
                        enable_progress_bar=False, enable_checkpointing=False,
                        limit_val_batches=0, limit_train_batches=0)  # fmt: skip
    trainer.fit(BNDropout(), DataLoader(data, batch_size=4))
    (check,) = checks_of(trainer).values()
    assert check.why == "never logged: no training batch ran (`limit_train_batches=0`)"


def test_monitor_says_at_the_start_an_explicit_schedule_past_the_run(tmp_path):
    # setups hunt 21: `every_n_steps=1000` on a 32-step run was said only at the end
    said = []
    for name, monitor in (("steps", KernelMonitor(every_n_steps=1000)),
                          ("epochs", KernelMonitor(every_n_epochs=5))):  # fmt: skip
        trainer = L.Trainer(max_epochs=2, logger=TensorBoardLogger(tmp_path / name),
                            callbacks=[monitor], enable_progress_bar=False,
                            enable_checkpointing=False, limit_train_batches=4,
                            limit_val_batches=0)  # fmt: skip
        with pytest.warns(UserWarning, match="is past this run's") as caught:
            trainer.fit(BNDropout(), ZooData())
        said += [str(w.message) for w in caught if "is past this run's" in str(w.message)]
        assert monitor.events == 0
    assert said[0].startswith("KernelMonitor: `every_n_steps=1000` is past this run's 8 steps")
    assert "`every_n_epochs=5` is past this run's 2 epoch(s)" in said[1]


class FailsAtStep(L.Callback):
    """The user's own error at a step: the fit ends by an exception, no ``on_fit_end``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("the user's own error")


def test_monitor_summary_told_when_the_fit_ends_by_an_exception(tmp_path, caplog, capsys):
    # setups hunt 25: a run that diverged (a problem, warned) and then died of a user error
    # got no summary, no notes and no "logs of this run are in" line
    import logging

    planted = Recorder(every_n_steps=2)
    with caplog.at_level(logging.INFO), pytest.raises(RuntimeError, match="own error"):
        run(tmp_path, [KernelMonitor(every_n_steps=2), planted, FailsAtStep(5)])
    told = [r.getMessage() for r in caplog.records if r.name == "lightning_cnnviz"]
    (summary,) = [m for m in told if "the fit ended" in m]
    assert summary.startswith("lightning-cnnviz: the fit ended at step 5 with RuntimeError; ")
    assert "logs of this run are in" in capsys.readouterr().out
    assert planted.steps == [2, 4]


class Endless(torch.utils.data.IterableDataset):
    """Batches of 8 digits-sized images, without end (no ``len``)."""

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        while True:
            yield torch.randn(1, 16, 16, generator=g), int(torch.randint(0, 4, (1,), generator=g))


def test_monitor_that_never_logged_says_so_where_the_run_length_was_unknown(tmp_path):
    # setups hunt 25: `every_n_epochs=2` on endless data (its only epoch never ends) wrote
    # nothing and said so in the summary alone; with a known length it is said at the start
    monitor = KernelMonitor(every_n_epochs=2)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=6, logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[monitor], enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="KernelMonitor: never logged in this run") as said:
        trainer.fit(BNDropout(), torch.utils.data.DataLoader(Endless(), batch_size=8))
    assert monitor.events == 0 and len([w for w in said if "never logged" in str(w.message)]) == 1


def test_monitor_a_tuner_trial_fit_then_the_fit_say_a_step_aside_once(tmp_path):
    # setups hunt 76: AttentionMonitor on a CNN (no attention) stepped aside saying why in
    # Tuner.lr_find's trial fit and again in the fit after it: one run, said twice
    import warnings

    from lightning.pytorch.tuner import Tuner

    from lightning_cnnviz import AttentionMonitor
    from tests.monitors import TinyCNN, loaders, trainer_for

    monitor = AttentionMonitor()
    trainer, model, (train, val) = trainer_for(tmp_path, [monitor]), TinyCNN(), loaders()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Tuner(trainer).lr_find(model, train, val, num_training=4, update_attr=False)
        trainer.fit(model, train, val)
    said = [str(w.message) for w in caught if "AttentionMonitor steps aside" in str(w.message)]
    assert len(said) == 1 and monitor.disabled
    assert monitor.aside_reason and monitor.aside_reason.split(": ", 1)[-1] in said[0]


def test_monitor_given_twice_by_configure_callbacks_summarises_the_fit_once(tmp_path):
    # setups hunt 76: `configure_callbacks` returning the same monitors twice (the Trainer
    # refuses that in `callbacks=`, it does not check these) wrote the summary twice
    from tests.monitors import TinyCNN, loaders, trainer_for

    monitor = KernelMonitor(every_n_steps=2)

    class Twice(TinyCNN):
        def configure_callbacks(self):
            return [monitor, monitor]

    trainer = trainer_for(tmp_path, [])
    trainer.fit(Twice(), *loaders())
    assert monitor.events == 2
    assert len(texts(events(tmp_path), "cnnviz/summary")) == 1
