"""A 2-process CPU DDP fit (gloo, ``strategy="ddp"``) with every monitor at once.

Only rank zero renders and writes: one event file, one record per image tag and
step, one ``cnnviz/layers`` text per monitor. The ActivationMonitor joins its
dead-mask all-reduce on both ranks and both ranks agree on the result (the
exact reduction, a unit alive on one rank only, is ``test_activations``'s DDP
test). Synchronised BatchNorm (on CPU a gloo all-reduce stand-in, since PyTorch's SyncBatchNorm
refuses CPU modules under DDP; see ``ddp_fit.py``): the probe passes (eval mode, rank zero
only) do not hang the run; the subprocess has a timeout, pytest-timeout a larger one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from lightning_cnnviz.core.logs import event_folder
from tests.monitors import ALL_MONITORS, failures, section
from tests.tb import events, layer_lists

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(420)


def _ddp_fit(out: Path, mode: str, timeout: int) -> list[dict]:
    """``tests/ddp_fit.py OUT MODE`` on 2 processes; each rank's record."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "ddp_fit.py"), str(out), mode],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_distributed_step_aside_on_rank_zero_alone_is_every_ranks(tmp_path):
    # probe passes run on rank zero alone, so only it sees them fail; a rank still on its
    # schedule would wait in a broadcast rank zero never joins (the fit died, gloo's
    # "Connection closed by peer", on a torchvision VOCSegmentation under 2-process DDP)
    ranks = _ddp_fit(tmp_path, "rank0_fails", timeout=300)
    assert [r["global_step"] for r in ranks] == [6, 6]
    for name in ("OverfittingMonitor", "GradCAMMonitor"):
        zero, one = (r["monitors"][name] for r in ranks)
        assert zero["disabled"] and one["disabled"], name
        assert zero["events"] == one["events"] == 0
        assert zero["last_logged_step"] == one["last_logged_step"] >= 0
    said = [w for w in ranks[0]["warnings"] if "failed on rank zero" in w]
    assert {w.split()[0] for w in said} == {"OverfittingMonitor", "GradCAMMonitor"}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    return out, _ddp_fit(out, "sync_batchnorm", timeout=360)


def test_distributed_automatic_schedules_stretched_by_rank_zero_stay_one_schedule(tmp_path):
    # rank zero alone does the work, so only its budget sees a cost and stretches the
    # schedule; every rank must follow it, or one waits in a broadcast the other never joins
    ranks = _ddp_fit(tmp_path, "auto_budget", timeout=300)
    assert [r["global_step"] for r in ranks] == [16, 16]
    for name in ("GradCAMMonitor", "KernelMonitor"):
        zero, one = (r["monitors"][name] for r in ranks)
        assert zero["factor"] == one["factor"] > 1, name  # stretched, and alike on both ranks
        assert zero["last_logged_step"] == one["last_logged_step"]
        assert zero["events"] >= 2 and one["events"] == 0  # the work is rank zero's


def test_distributed_both_ranks_trained_with_sync_batchnorm(ddp_run):
    _, ranks = ddp_run
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["global_step"] == 2 and r["sync_bn"] for r in ranks)
    # Every training-mode BatchNorm forward was a collective both ranks joined: 2 BN layers x
    # 2 training batches; the monitors' probe passes (eval mode) added none on either rank.
    assert ranks[0]["collectives"] == ranks[1]["collectives"] == 4


def test_distributed_one_event_file_written_by_rank_zero(ddp_run):
    out, _ = ddp_run
    files = list(Path(out).rglob("events.out.tfevents.*"))
    run = event_folder(out)
    # one file for the run and one each for its train/val twins, all by one process
    assert sorted(f.parent.relative_to(run).as_posix() for f in files) == [".", "train", "val"]
    assert len({f.name.split(".")[-2] for f in files}) == 1, files  # ...<host>.<pid>.<n>
    acc = events(out)
    ours = tuple(section(n) + "/" for n in ALL_MONITORS)
    images = [t for t in acc.Tags()["images"] if t.startswith(ours)]
    scalars = [t for t in acc.Tags()["scalars"] if t.startswith(ours)]
    assert images and scalars
    for tag in images:  # one record per (tag, step): rank 1 wrote nothing
        steps = [e.step for e in acc.Images(tag)]
        assert len(steps) == len(set(steps)), (tag, steps)
    for tag in scalars:
        steps = [e.step for e in acc.Scalars(tag)]
        assert len(steps) == len(set(steps)), (tag, steps)
    layers = Counter(t.split("**")[1] for t in layer_lists(acc))
    watching = [n for n in ALL_MONITORS if n != "OverfittingMonitor"]
    assert all(layers[n] == 1 for n in watching), layers


@pytest.mark.parametrize("name", ALL_MONITORS)
def test_distributed_monitor_ran_on_rank_zero_only(ddp_run, name):
    out, (rank0, rank1) = ddp_run
    assert not failures(rank0["warnings"], name) and not failures(rank1["warnings"], name)
    zero, one = rank0["monitors"][name], rank1["monitors"][name]
    assert zero["events"] >= 1 and not zero["disabled"]
    assert not one["disabled"] and one["last_logged_step"] == zero["last_logged_step"]
    if name == "ActivationMonitor":  # all ranks: the dead-mask reduction is a collective
        assert one["events"] == zero["events"]  # rank 1 joined every reduction
        assert zero["dead"] is not None and set(zero["dead"]) == {"relu1", "relu2"}
    else:
        assert one["events"] == 0
    acc = events(out)
    tags = acc.Tags()
    mine = [t for kind in ("images", "scalars", "tensors") for t in tags[kind]
            if t.startswith(section(name) + "/")]  # fmt: skip
    projector = list(Path(out).rglob("projector_config.pbtxt"))
    assert mine or (name == "EmbeddingMonitor" and projector), f"nothing from {name}"
