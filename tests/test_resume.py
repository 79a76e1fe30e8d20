"""Stop after N steps, resume from the checkpoint: every monitor's series continues exactly.

Run A trains 4 steps (3 batches per epoch, so it stops inside epoch 1) and saves a
checkpoint; run B resumes from it with a fresh monitor instance to step 8, writing into
the same TensorBoard folder. Read back raw from the event files (nothing deduplicated):
each of the monitor's series has every scheduled step from its first record on, exactly
once (step schedule: every 2 steps; epoch schedule: each validation end); the probe
indices are the same after the resume; series that compare with the previous log
(relative change, drift) go on at the first log after the resume, so what they compare
with came back from the checkpoint.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    failures,
    fit,
    loaders,
    make_monitor,
    raw_steps,
    section,
)

pytestmark = pytest.mark.timeout(300)

STEPS_A, STEPS_B, BATCHES = 4, 8, 3
STEP_SCHEDULE = [2, 4, 6, 8]
EPOCH_SCHEDULE = [3, 6]  # validation ends: epoch 0 ends at step 3, epoch 1 at step 6


def _fit(tmp_path, monitor, max_steps, model=None, ckpt_path=None):
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    data = loaders(n_train=24, n_val=16, batch_size=8)
    return fit(tmp_path, [monitor], model=model, data=data, logger=logger, ckpt_path=ckpt_path,
               max_steps=max_steps, max_epochs=-1, limit_train_batches=BATCHES)  # fmt: skip


# OverfittingMonitor's figures of the passes it runs only when needed (overfitting/passes.py)
SPARSE = ("/bn_gap_acc", "/bn_screen", "/ece_train", "/overconfidence_train")


def _expected(monitor, first: int) -> list[int]:
    schedule = STEP_SCHEDULE if monitor.every_n_steps is not None else EPOCH_SCHEDULE
    return [s for s in schedule if s >= first]


@pytest.mark.parametrize("name", ALL_MONITORS)
def test_resume_series_continue_without_duplicates_or_gaps(tmp_path, name):
    torch.manual_seed(0)
    first = make_monitor(name)
    trainer, _, messages = _fit(tmp_path, first, STEPS_A)
    assert trainer.global_step == STEPS_A and not failures(messages, name)
    ckpt = tmp_path / "stop.ckpt"
    trainer.save_checkpoint(ckpt)
    state_a = first.state_dict()

    second = make_monitor(name)
    trainer, _, messages = _fit(tmp_path, second, STEPS_B, model=TinyCNN(), ckpt_path=str(ckpt))
    assert trainer.global_step == STEPS_B and not failures(messages, name)
    assert not second.disabled and second.events >= 1

    state_b = second.state_dict()
    assert state_b["seed"] == state_a["seed"]
    for split, indices in state_a["probe_indices"].items():  # the same probe samples
        assert state_b["probe_indices"][split] == indices
    assert set(state_b["extra"]) == set(state_a["extra"])

    per_fit = {"cnnviz/summary"}  # written once at the end of each fit, by design
    steps = {t: s for t, s in raw_steps(tmp_path).items()
             if t.startswith(section(name) + "/") and t not in per_fit}  # fmt: skip
    if name != "EmbeddingMonitor":  # the projector writes files, its scalar may be NaN-free only
        assert steps, f"no series from {name}"
    for tag, written in steps.items():
        if any(tag.endswith(t) for t in SPARSE):  # written when their pass runs: no repeats
            assert written == sorted(set(written)), (tag, written)
            assert set(written) <= set(_expected(second, written[0])), (tag, written)
            continue
        assert written == _expected(second, written[0]), (tag, written)
    layers = raw_steps(tmp_path).get("cnnviz/layers", [])
    assert len(layers) <= 2  # at most once per fit


def test_resume_kernels_relative_change_continues_across_the_resume(tmp_path):
    """relative_change at step 6 needs the step-4 weights, which only the checkpoint has."""
    trainer, _, _ = _fit(tmp_path, make_monitor("KernelMonitor"), STEPS_A)
    trainer.save_checkpoint(tmp_path / "stop.ckpt")
    _fit(tmp_path, make_monitor("KernelMonitor"), STEPS_B, model=TinyCNN(),
         ckpt_path=str(tmp_path / "stop.ckpt"))  # fmt: skip
    assert raw_steps(tmp_path)["kernels/conv1/relative_change"] == [4, 6, 8]


def test_resume_keeps_the_checkpoints_probe_and_says_so_where_num_samples_changed(tmp_path):
    # held out (setups hunt 22): `num_samples=4` given on resuming a run of 8 kept drawing
    # 8-image grids, silently
    trainer, _, _ = _fit(tmp_path, make_monitor("GradCAMMonitor", num_samples=8), STEPS_A)
    trainer.save_checkpoint(tmp_path / "stop.ckpt")
    second = make_monitor("GradCAMMonitor", num_samples=4)
    _, _, messages = _fit(tmp_path, second, STEPS_B, model=TinyCNN(),
                          ckpt_path=str(tmp_path / "stop.ckpt"))  # fmt: skip
    assert len(second.state_dict()["probe_indices"]["val"]) == 8
    (said,) = [m for m in messages if "keeps the 8 val probe images of the checkpoint" in m]
    assert "`num_samples=4` given" in said


def test_resume_a_fit_that_runs_no_batch_says_so_not_a_missing_loss(tmp_path):
    # setups hunt 27: resumed from a checkpoint taken at the end ("shorter than its first
    # scheduled event"), or fit again on a finished trainer ("`training_step` returned none")
    from lightning_cnnviz import ActivationMonitor

    first = ActivationMonitor(every_n_steps=2)
    trainer, model, _ = _fit(tmp_path / "a", first, STEPS_A)
    assert first.events == 2 and first.fit_batches == STEPS_A
    ckpt = str(tmp_path / "end.ckpt")
    trainer.save_checkpoint(ckpt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, *loaders(n_train=24, n_val=16, batch_size=8))  # already at the end
    said = [str(w.message) for w in caught]
    assert first.fit_batches == 0 and not [s for s in said if "returned none" in s], said
    again = ActivationMonitor(every_n_steps=2)
    _, _, said = _fit(tmp_path / "b", again, STEPS_A, ckpt_path=ckpt)
    (never,) = [s for s in said if "never logged" in s]
    assert "this fit ran no training batch (resumed from a checkpoint" in never
    assert "shorter than its first scheduled event" not in never


@pytest.mark.parametrize("name", ["GradCAMMonitor", "OverfittingMonitor"])
def test_resume_a_fit_of_the_same_model_on_other_data_draws_its_own_probes(tmp_path, name):
    # setups hunt 77: a model fit on 64/32 items, then on a 12/8-item subset: the kept
    # probe indices stepped four monitors aside with a bare `IndexError`; a larger second
    # set kept the first one's images, "of the checkpoint it resumed from"
    torch.manual_seed(0)
    monitor, model = make_monitor(name, num_samples=16), TinyCNN()
    fit(tmp_path / "a", [monitor], model=model, data=loaders(n_train=64, n_val=32))
    for n_train, n_val in ((12, 8), (48, 24)):
        _, _, said = fit(tmp_path / str(n_val), [monitor], model=model,
                         data=loaders(n_train, n_val))  # fmt: skip
        assert not failures(said, name) and not monitor.disabled and monitor.events > 0
        assert not [m for m in said if "of the checkpoint it resumed from" in m]
        indices = monitor.state_dict()["probe_indices"]["val"]
        assert len(indices) == min(16, n_val) and max(indices) < n_val
