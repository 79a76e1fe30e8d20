"""Between logging steps every monitor stays out of the training loop (not timed).

``tests/contract/test_contract.py`` already checks, on the zoo, that no module hook is
seen from inside ``training_step`` between logging steps. This file checks what it
does not, for every monitor on a short fit (``every_n_steps=3``, validation every 3
steps), batch by batch, from a spy before and one after all monitors' batch hooks:

* on a batch where the monitor does not log, the model's forward runs exactly once
  (the training forward: no probe pass) and the monitor's phase timings stay put;
* after every monitor's ``on_train_batch_start`` and ``on_train_batch_end`` no hook
  is attached to any module (``hook_count``), no global module hook exists and no
  parameter carries a tensor hook; the exceptions are ActivationMonitor's sampled
  window, the ``window`` batches just before its logging step (hooked on purpose,
  detached again at that batch's end), OverfittingMonitor's one tap on the batch a
  validation follows, and the fit's first two batches, read once.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules import module as torch_module

from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.overfitting.val_reach import trained_layers
from tests.monitors import ALL_MONITORS, TinyCNN, fit, loaders, make_monitor

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EVERY = 3
BATCHES = 8  # optimizer steps 1..8: logs at 3 and 6 (validation after 3 and 6 too)


class CountingCNN(TinyCNN):
    """TinyCNN that counts its forward calls outside the validation loop."""

    def __init__(self) -> None:
        super().__init__()
        self.forwards: list[int] = []  # appended to: the monitors put attributes back

    def forward(self, x):
        if not self.trainer.validating:
            self.forwards.append(1)
        return super().forward(x)


def global_hooks() -> int:
    names = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks")
    names += ("_global_backward_pre_hooks",)
    return sum(len(getattr(torch_module, n, {})) for n in names)


def hooks(model: torch.nn.Module) -> int:
    tensor_hooks = sum(len(p._backward_hooks or {}) for p in model.parameters())
    return sum(hook_count(model).values()) + tensor_hooks + global_hooks()


class Spy:
    """Records per training batch what the monitor did; ``before`` runs ahead of it."""

    def __init__(self, monitor) -> None:
        self.monitor, self.baseline = monitor, None
        self.intervals: list[dict] = []  # one per batch: batch start to the next batch start
        self.hooked: list[tuple[int, str, int]] = []  # (global_step, where, extra hooks)

    def snapshot(self, model) -> tuple:
        return len(model.forwards), dict(self.monitor.timings), self.monitor.events

    def open(self, trainer, model) -> None:
        self.close(model)
        self.intervals.append({"step": trainer.global_step, "at": self.snapshot(model)})

    def close(self, model) -> None:
        if self.intervals and "until" not in self.intervals[-1]:
            self.intervals[-1]["until"] = self.snapshot(model)

    def check_hooks(self, trainer, model, where: str) -> None:
        extra = hooks(model) - self.baseline
        if extra:
            self.hooked.append((trainer.global_step, where, extra))


def spies(monitor):
    import lightning as L

    spy = Spy(monitor)

    class Before(L.Callback):
        def on_train_start(self, trainer, pl_module):
            spy.baseline = hooks(pl_module)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            spy.open(trainer, pl_module)

        def on_train_end(self, trainer, pl_module):
            spy.close(pl_module)

    class After(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            spy.check_hooks(trainer, pl_module, "start")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            spy.check_hooks(trainer, pl_module, "end")

    return spy, Before(), After()


@pytest.mark.parametrize("name", ALL_MONITORS)
def test_no_work_between_logs_no_hooks_one_forward_frozen_timings(tmp_path, name):
    monitor = make_monitor(name, every_n_steps=EVERY, window=1, strict=True)
    spy, before, after = spies(monitor)
    model = CountingCNN()
    fit(
        tmp_path, [before, monitor, after], model=model,
        data=loaders(n_train=8 * BATCHES, batch_size=8),
        limit_train_batches=BATCHES, val_check_interval=EVERY,
    )  # fmt: skip
    assert monitor.events >= 2 and not monitor.disabled, f"{name} logged {monitor.events} times"
    quiet = [i for i in spy.intervals if i["at"][2] == i["until"][2]]
    assert len(quiet) >= BATCHES - 3, f"only {len(quiet)} batches without a logging event"
    for interval in quiet:
        (f0, t0, _), (f1, t1, _) = interval["at"], interval["until"]
        step = interval["step"]
        assert f1 - f0 == 1, f"{f1 - f0} forward calls in the batch at global_step={step}"
        assert t1 == t0, f"timings changed at global_step={step} without a logging event"
    window = getattr(monitor, "window", 0)  # ActivationMonitor hooks the batches before a log
    # the fit's first two batches: one global read-only pre-hook (what the step does to
    # the images, core/step_follower.py), and on the first OverfittingMonitor's tap on the
    # first layer (step_inputs.py) and on each trained layer (val_reach.py: whether taps
    # see the model's calls); all off at that batch's end
    overfitting = type(monitor).__name__ == "OverfittingMonitor"
    first_taps = 1 + overfitting * (1 + len(trained_layers(model)))
    for step, where, extra in spy.hooked:
        if (step, where, extra) in ((0, "start", first_taps), (1, "start", 1)):
            continue
        # OverfittingMonitor reads the training step's input again on the batch a validation
        # follows (step_inputs.py: a `training_step` changed mid-run); one tap, off at its end
        to_validation = (step + 1) % EVERY == 0  # validation every EVERY batches
        if overfitting and (where, extra) == ("start", 1) and to_validation:
            continue
        to_log = -(step + 1) % EVERY  # batches after this one until the logging step
        assert where == "start" and to_log < window, (
            f"{extra} hook(s) after all on_train_batch_{where} hooks at global_step={step}"
        )
    if window:
        assert spy.hooked, "ActivationMonitor's window should have hooked a batch"
