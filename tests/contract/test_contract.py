"""The safety contract (DESIGN.md), for every registered monitor on every zoo model.

1. No observer effect: bit-identical weights with vs without the monitor.
2. A probe pass leaves BatchNorm buffers, ``training`` flags and ``param.grad`` alone.
3. No leaked hooks: after fit, after a failing fit, after a second fit.
4. Works with ``inference_mode`` on and off.
5. No hook between logging steps (seen from inside ``training_step``).
"""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz import in_probe_pass
from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.schedule import Schedule
from lightning_cnnviz.overfitting.val_reach import trained_layers
from tests.contract.registry import MONITORS
from tests.contract.zoo import ZOO, ZooData

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

STEPS = 6  # optimizer steps per fit; with accumulate_grad_batches=2 that is 12 batches


def fit(
    tmp_path, model_name, callbacks=(), *, inference_mode=True, seed=0, model=None, steps=STEPS
):
    L.seed_everything(seed, verbose=False)
    model = model or ZOO[model_name]()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=steps,
        max_epochs=-1,
        accumulate_grad_batches=2,
        limit_val_batches=2,
        val_check_interval=4,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=1,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=list(callbacks),
        inference_mode=inference_mode,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        deterministic=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=ZooData())
    return model, trainer


_baseline: dict[str, dict[str, torch.Tensor]] = {}


def baseline_state(tmp_path_factory, model_name):
    if model_name not in _baseline:
        model, _ = fit(tmp_path_factory.mktemp("baseline"), model_name)
        _baseline[model_name] = {k: v.clone() for k, v in model.state_dict().items()}
    return _baseline[model_name]


cases = pytest.mark.parametrize("monitor_name", sorted(MONITORS))
models = pytest.mark.parametrize("model_name", sorted(ZOO))


@cases
@models
def test_contract_training_is_bit_identical(tmp_path, tmp_path_factory, monitor_name, model_name):
    monitor = MONITORS[monitor_name].make()
    model, _ = fit(tmp_path, model_name, [monitor])
    assert monitor.events > 0 and not monitor.disabled, "the monitor never logged"
    expected = baseline_state(tmp_path_factory, model_name)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), f"{key} differs with {monitor_name}"


class ProbeSpy(L.Callback):
    """Mid-accumulation (after the first micro-batch's backward), fire the monitor directly."""

    def __init__(self, monitor) -> None:
        self.monitor = monitor
        self.checked = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx % 2 != 0 or batch_idx == 0:
            return  # odd batches finish an accumulation window; we want the middle of one
        grads = {n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None}
        buffers = {n: b.clone() for n, b in pl_module.named_buffers()}
        flags = {n: m.training for n, m in pl_module.named_modules()}
        assert grads, "expected accumulated gradients mid-accumulation"
        self.monitor.strict = True
        self.monitor._fire(trainer, pl_module)
        for n, p in pl_module.named_parameters():
            if n in grads:
                assert torch.equal(p.grad, grads[n]), f"param.grad of {n} changed"
            else:
                assert p.grad is None, f"param.grad of {n} appeared"
        for n, b in pl_module.named_buffers():
            assert torch.equal(b, buffers[n]), f"buffer {n} changed"
        assert {n: m.training for n, m in pl_module.named_modules()} == flags
        self.checked += 1


@cases
@models
def test_contract_probe_pass_leaves_model_state(tmp_path, monitor_name, model_name):
    monitor = MONITORS[monitor_name].make()
    monitor.schedule = Schedule(every_n_steps=10_000)  # only the spy fires it
    spy = ProbeSpy(monitor)
    fit(tmp_path, model_name, [monitor, spy], steps=3)
    assert spy.checked >= 1 and monitor.events >= 1


@cases
@models
def test_contract_no_leaked_hooks(tmp_path, monitor_name, model_name):
    model = ZOO[model_name]()
    before = hook_count(model)
    monitor = MONITORS[monitor_name].make()
    fit(tmp_path / "a", model_name, [monitor], model=model)
    assert hook_count(model) == before, "hooks left after fit"
    model.raise_at_step = 5  # inside a sampled window for every schedule used here
    with pytest.raises(RuntimeError, match="planted failure"):
        fit(tmp_path / "b", model_name, [monitor], model=model)
    assert hook_count(model) == before, "hooks left after a failing fit"
    model.raise_at_step = None
    fit(tmp_path / "c", model_name, [monitor], model=model)
    assert hook_count(model) == before, "hooks left after a second fit"
    assert monitor.events > 0


@cases
@pytest.mark.parametrize("inference_mode", [True, False])
def test_contract_works_with_inference_mode(tmp_path, monitor_name, inference_mode):
    monitor = MONITORS[monitor_name].make()
    monitor.strict = True
    fit(tmp_path, "bn_dropout", [monitor], inference_mode=inference_mode)
    assert monitor.events > 0 and not monitor.disabled


@cases
@models
def test_contract_no_hooks_between_logging_steps(tmp_path, monitor_name, model_name):
    case = MONITORS[monitor_name]
    model = ZOO[model_name]()
    baseline = sum(hook_count(model).values())
    monitor, events = case.make(), EventsAt()
    fit(tmp_path, model_name, [monitor, events], model=model)
    assert model.hook_log
    for step, batch_idx, hooks in model.hook_log:
        # The batch runs towards optimizer step `step + 1`; a window of w steps before
        # a logging step may carry hooks, every other batch must run bare.
        steps_to_log = -(step + 1) % case.every_n_steps
        if case.first_batch and (step, batch_idx) == (0, 0):
            # read-only taps on this batch only: the first layer's (step_inputs) and one
            # per trained layer (val_reach: whether taps see the model's calls at all)
            assert 0 <= hooks - baseline <= 1 + len(trained_layers(model))
        elif case.after_event and events.ran_one(step, batch_idx):
            assert 0 <= hooks - baseline <= 1  # the first layer's tap (step_inputs)
        elif steps_to_log >= case.window:
            assert hooks == baseline, (
                f"{hooks - baseline} hook(s) attached at global_step={step}, batch {batch_idx}"
            )


class EventsAt(L.Callback):
    """The monitor's events after each training batch's start (put after the monitor)."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[int, int], int]] = []  # ((global_step, batch_idx), events)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        monitor = next(c for c in trainer.callbacks if hasattr(c, "events") and c is not self)
        self.seen.append(((trainer.global_step, batch_idx), monitor.events))

    def ran_one(self, step: int, batch_idx: int) -> bool:
        """Whether the monitor's events rose at the start of this batch."""
        keys = [key for key, _ in self.seen]
        i = keys.index((step, batch_idx))
        return i > 0 and self.seen[i][1] > self.seen[i - 1][1]


class UserTap:
    """A user's own forward hook: it keeps the run's passes and skips the probe passes."""

    def __init__(self, model) -> None:
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        self.handle = conv.register_forward_hook(self)
        self.calls: list[tuple[bool, int]] = []

    def __call__(self, module, args, output) -> None:
        if not in_probe_pass():
            self.calls.append((module.training, output.shape[0]))


@cases
def test_contract_user_hook_sees_only_the_runs_passes(tmp_path, monitor_name):
    """``in_probe_pass()`` tells a user's hook every extra pass a monitor makes, and only those."""
    bare, observed = ZOO["bn_dropout"](), ZOO["bn_dropout"]()
    bare_tap, observed_tap = UserTap(bare), UserTap(observed)
    fit(tmp_path / "bare", "bn_dropout", model=bare)
    monitor = MONITORS[monitor_name].make()
    fit(tmp_path / "observed", "bn_dropout", [monitor], model=observed)
    assert monitor.events > 0 and not monitor.disabled
    assert observed_tap.calls == bare_tap.calls


class Copying(ZOO["bn_dropout"]):
    """Copies its layers in every training step: a lazily made mean teacher, a snapshot."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[torch.nn.ModuleList] = []
        self.held_then: list[int] = []
        self.twins: list[torch.nn.ModuleList] = []

    def training_step(self, batch, batch_idx):
        import copy
        import io

        layers = torch.nn.ModuleList(self.children())
        snapshot = io.BytesIO()
        torch.save(layers, snapshot)  # a whole-module save: pickling a package hook raised
        snapshot.seek(0)
        made = [copy.deepcopy(layers), torch.load(snapshot, weights_only=False)]
        self.copies += made
        self.held_then += [sum(hook_count(c).values()) for c in made]  # while the step runs
        twin = copy.deepcopy(made[0])  # a copy of a copy (an average of a teacher)
        self.twins.append(twin)
        return super().training_step(batch, batch_idx)


@cases
def test_contract_copies_taken_in_a_step_hold_no_hook(tmp_path, monitor_name):
    # setups hunt 39: `deepcopy(self.net)` in a step kept the package's hooks after the
    # fit (run at every teacher forward), and `torch.save(self.net)` failed to pickle them;
    # setups hunt 42: the stand-ins left instead broke `torch.jit.script` of the copy
    model = Copying()
    monitor = MONITORS[monitor_name].make()
    fit(tmp_path, "bn_dropout", [monitor], model=model)
    assert monitor.events > 0 and len(model.copies) == 2 * len(model.hook_log)
    if any(hooks for _, _, hooks in model.hook_log):  # the monitor hooks some steps
        assert any(model.held_then), "no copy was taken while the monitor's hooks were on"
    deep = model.copies[::2] + model.twins  # deep copies: none left, run or not
    assert [sum(hook_count(c).values()) for c in deep] == [0] * len(deep)
    held = model.held_then[::2]
    torch.jit.script(model.copies[::2][held.index(max(held))][0])  # no hook it cannot compile
    for layers in model.copies[1::2]:  # loaded from a save: the stand-in goes where it runs
        x = torch.zeros(2, 1, 16, 16)
        for layer in layers[:8]:  # as `BNDropout.forward`
            x = layer.eval()(x)
        layers[9](layers[8].eval()(x.flatten(1)))
        assert sum(hook_count(layers).values()) == 0
