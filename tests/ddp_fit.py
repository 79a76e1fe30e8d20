"""A 2-process CPU DDP fit with every monitor (run as a script by test_distributed.py).

``python tests/ddp_fit.py OUT [sync_batchnorm | auto_budget]``: Lightning's ``strategy="ddp"``
re-runs this script for rank 1. Each rank writes ``OUT/rank{r}.json`` with what its monitors
did. ``auto_budget``: two monitors on their automatic schedules with a budget so small that
rank zero's measured cost stretches them at once (only rank zero does their work), over 16
steps: the ranks must keep one schedule, or one waits in a collective the other never joins.
``rank0_fails``: two rank-zero monitors whose events fail on rank zero alone (as a probe pass,
which runs there alone, can): both ranks must step aside together and finish the fit.

PyTorch's ``SyncBatchNorm`` refuses CPU modules under DDP ("SyncBatchNorm layers only work
with GPU modules"), so on CPU the BatchNorms are replaced by ``AllReduceBatchNorm2d``: the
same synchronisation (an all-reduce of per-channel sums in every training-mode forward) over
gloo. A probe pass run by rank zero alone in training mode would hang it exactly like
SyncBatchNorm; the module counts its collectives so the test can compare the ranks. With two
or more GPUs the real ``sync_batchnorm=True`` is used.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from tests.monitors import ALL_MONITORS, TinyCNN, loaders, make_monitor


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are all-reduced over the process group."""

    collectives = 0

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        type(self).collectives += 1
        dims = [0, 2, 3]
        count = x.new_full((1,), x.numel() / x.shape[1])
        totals = dist_fn.all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        c = x.shape[1]
        n = totals[-1]
        mean, var = totals[:c] / n, totals[c : 2 * c] / n - (totals[:c] / n) ** 2
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
            self.num_batches_tracked += 1
        shape = (1, c, 1, 1)
        x = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return x * self.weight.view(shape) + self.bias.view(shape)


def synced(model: nn.Module) -> nn.Module:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, AllReduceBatchNorm2d(child.num_features))
        else:
            synced(child)
    return model


def fails_on_rank_zero(monitor: Any) -> Any:
    """``monitor`` with events that raise on rank zero and nowhere else."""
    original = monitor.log_event

    def log_event(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            raise RuntimeError("the probe pass failed on rank zero")
        original(trainer, pl_module)

    monitor.log_event = log_event
    return monitor


def main(out: str, mode: str) -> None:
    L.seed_everything(0, verbose=False)
    torch.set_num_threads(1)
    sync_batchnorm, auto = mode == "sync_batchnorm", mode == "auto_budget"
    fails = mode == "rank0_fails"
    real_sync = sync_batchnorm and torch.cuda.device_count() >= 2
    model = TinyCNN()
    if sync_batchnorm and not real_sync:
        model = synced(model)
    if auto:
        automatic = {"every_n_steps": None, "every_n_epochs": None, "budget": 1e-4}
        monitors = {n: make_monitor(n, **automatic) for n in ("GradCAMMonitor", "KernelMonitor")}
    elif fails:
        names = ("OverfittingMonitor", "GradCAMMonitor")
        monitors = {n: fails_on_rank_zero(make_monitor(n)) for n in names}
    else:
        monitors = {name: make_monitor(name) for name in ALL_MONITORS}
    trainer = L.Trainer(
        devices=2, strategy="ddp", max_epochs=2 if auto else 3 if fails else 1,
        limit_train_batches=8 if auto else 2, limit_val_batches=1, num_sanity_val_steps=0,
        default_root_dir=out,
        logger=TensorBoardLogger(out, name="tb"), callbacks=list(monitors.values()),
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        sync_batchnorm=real_sync, accelerator="gpu" if real_sync else "cpu",
    )  # fmt: skip
    train, val = loaders(n_train=64 if auto else 32, n_val=16, batch_size=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, train, val)
    rank = trainer.global_rank
    result = {
        "rank": rank,
        "global_step": trainer.global_step,
        "sync_bn": any(
            isinstance(m, nn.SyncBatchNorm | AllReduceBatchNorm2d)
            for m in trainer.lightning_module.modules()
        ),
        "collectives": AllReduceBatchNorm2d.collectives,
        "monitors": {
            name: {
                "events": m.events,
                "disabled": m.disabled,
                "last_logged_step": m.last_logged_step,
                "factor": m.schedule.factor,
                "dead": getattr(m, "dead_channels", None),
            }
            for name, m in monitors.items()
        },
        "warnings": [str(w.message) for w in caught],
    }
    with open(f"{out}/rank{rank}.json", "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
