"""GPU check: what the ``standard`` monitors cost on a GPU, and that quiet steps never sync.

torchvision's ResNet-50 (``weights=None``, 10 classes; ``--batch`` 64 random images of
``--image-size`` 224 drawn on the device every step; SGD) trains under Lightning with
``precision="bf16-mixed"`` and a TensorBoardLogger in a temporary folder, in one
process, bare and with ``callbacks("standard")`` (the monitors at their defaults), for
``--steps`` optimizer steps each, alternating bare, standard, bare, standard
(``--reps``) so that warm-up and drift fall on both sides. Before them, two short
warm-up fits: a bare one that logs its loss (``self.log(..., on_step=False,
on_epoch=True)``: does Lightning's logging sync?) and a standard one with dense events
(one-time costs: imports, cuDNN plans, fonts). After them, a dense run
(``callbacks("standard", every_n_steps=--dense-every)``) gives many events to average.

Reported (one JSON blob, printed and written to ``benchmarks/results/gpu_check.json``):

* ``wall_ratio``: standard / bare fit time (train start to the end of fit, device
  synchronised: validation and the sink's final flush included), and ``loop_ratio``:
  the same for the training steps after the first 10%; each standard run over the
  mean of the bare runs beside it, median over reps;
* ``per_event`` per monitor: ``timings["total"] / events`` (time inside events on the
  training thread, not synchronised: GPU work an event leaves queued shows in the wall
  ratio only) in ms and in bare training steps (``bare_step_ms``: the bare loop's step),
  with its phases and ActivationMonitor's window; from the standard runs and from the
  dense run, where ``wall_ms_per_event`` is the dense run's extra wall time per event;
* ``sink_busy_s``: the sink thread's busy time (``Sink.busy_seconds``), off the
  training thread;
* ``peak_mem_added_mib``: ``torch.cuda.max_memory_allocated`` (reset before each
  run), standard minus bare (medians);
* ``sync``: every training batch in which no monitor may work (``_due_soon``) runs
  under ``torch.cuda.set_sync_debug_mode`` (``--sync-mode``: ``warn`` counts each
  synchronising call and where it came from; ``error`` stops the run at the first).
  Passed when the monitored runs sync nowhere the bare runs do not: when Lightning
  syncs by itself (``lightning_syncs_by_itself``), a monitored run may sync at the
  bare runs' sites as often as their rate per checked batch, or their count per fit,
  allows (``beyond_bare`` lists the rest). ``unexpected_events``: checked batches in
  which a monitor logged after all (``_due_soon`` mispredicted; their syncs are the
  event's and not counted).

Run (103 s of fits on one H200; ``--budget-minutes``, default 7, skips the fits that
would end later)::

    python benchmarks/gpu_check.py [--steps 300] [--reps 2] [--batch 64] [--image-size 224]
        [--out PATH]

A progress line with timings comes after every fit, and the JSON file is rewritten
after every fit, so a run cut short still leaves its figures. Exit status 1 when the
sync check fails, a fit breaks or a monitor steps aside. On a machine without CUDA (or
with ``--dry-run`` / ``--device cpu``) the same code runs as a CPU dry run on a small
setup (ResNet-18, 30 steps, batch 4, 64 px, dense every 15 steps; flags still apply),
written to ``gpu_check_dry_run.json``; sync checks and memory figures need CUDA and
come out null there.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import logging
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.presets import callbacks

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = 10
MIB = 1 << 20
SYNC_MESSAGE = "synchronizing CUDA operation"
GPU_SETUP = {
    "model": "resnet50",
    "steps": 300,
    "batch": 64,
    "image_size": 224,
    "warmup_steps": 30,
    "dense_every": 25,
}
DRY_SETUP = {  # dense every 15 steps: ActivationMonitor's window leaves quiet batches between
    "model": "resnet18",
    "steps": 30,
    "batch": 4,
    "image_size": 64,
    "warmup_steps": 10,
    "dense_every": 15,
}
ARGS = ("model", "steps", "reps", "batch", "image_size", "val_batches", "warmup_steps",
        "dense_every", "sync_mode")  # fmt: skip
START = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)


# ------------------------------------------------------------------- data and model
class RandomImages(Dataset):
    """``length`` random images labelled ``i % CLASSES``.

    A loader gets batches of indices only (``__getitems__``): the step draws its images
    on the device. The monitors' probes load items through ``__getitem__`` (CPU, seeded
    by index); ``targets`` lets them draw class-balanced probes without loading items.
    """

    def __init__(self, length: int, image_size: int, seed: int) -> None:
        self.image_size, self.seed = image_size, seed
        self.targets = torch.arange(length) % CLASSES

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        size = self.image_size
        return torch.randn(3, size, size, generator=gen), int(self.targets[index])

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.tensor(indices)


def _as_batch(indices: torch.Tensor) -> torch.Tensor:
    return indices


class Classifier(L.LightningModule):
    """A torchvision classifier on random data drawn on its device; logs only if asked."""

    def __init__(self, model: str, image_size: int, log_loss: bool) -> None:
        super().__init__()
        self.net = torchvision.models.get_model(model, weights=None, num_classes=CLASSES)
        self.image_size, self.log_loss = image_size, log_loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch: torch.Tensor, name: str) -> torch.Tensor:
        n, size = batch.shape[0], self.image_size
        x = torch.randn(n, 3, size, size, device=self.device)
        y = torch.randint(0, CLASSES, (n,), device=self.device)
        loss = F.cross_entropy(self(x), y)
        if self.log_loss:  # epoch-level only: nothing read back per step
            self.log(name, loss, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "train/loss")

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._loss(batch, "val/loss")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


# ------------------------------------------------------------------- the sync check
def _due_soon(monitors: list[Any], step: int, batches_left: int | None = None) -> bool:
    """Whether any monitor may work in the training batch that starts at global step ``step``.

    That batch completes optimizer step ``step + 1``, where monitors log (in
    ``on_train_batch_end``); ``step`` counts too, for a schedule read one step late.
    ActivationMonitor hooks the ``window`` batches before its logging step: they count
    as due. A schedule without ``next_step`` (its API is being reworked), or one that
    fails, makes every step due. An epoch schedule (``next_step`` is None) logs after
    the epoch's last batch, outside the checked batches, except for ActivationMonitor's
    window over the last ``window`` batches (``batches_left``: unknown = due).

    Example::

        >>> from lightning_cnnviz.kernels.callback import KernelMonitor
        >>> kernels = KernelMonitor(every_n_steps=10)
        >>> [s for s in range(25) if _due_soon([kernels], s)]  # completing steps 10, 11, 20, 21
        [9, 10, 19, 20]
        >>> activations = ActivationMonitor(every_n_steps=10, window=2)
        >>> [s for s in range(12) if _due_soon([activations], s)]
        [7, 8, 9, 10]
        >>> class Old:
        ...     schedule = object()
        >>> _due_soon([Old()], 5)
        True
    """
    for monitor in monitors:
        next_step = getattr(getattr(monitor, "schedule", None), "next_step", None)
        if not callable(next_step):
            return True
        lead = monitor.window if isinstance(monitor, ActivationMonitor) else 0
        try:
            target = next_step(max(step - 1, 0))
        except Exception:
            return True
        if target is None:
            if lead and (batches_left is None or batches_left <= lead + 1):
                return True
        elif target <= step + 1 + lead:
            return True
    return False


def _frames(stack: list[traceback.FrameSummary]) -> str:
    """The innermost frames of a stack outside the warnings machinery, short paths."""
    keep = [f for f in stack if not f.filename.endswith("warnings.py")]
    names = []
    for frame in keep[-3:][::-1]:
        path = frame.filename
        for root in ("site-packages/", f"{Path(__file__).resolve().parents[1]}/"):
            path = path.split(root)[-1]
        names.append(f"{path}:{frame.lineno} {frame.name}")
    thread = threading.current_thread().name
    return (f"[{thread}] " if thread != "MainThread" else "") + " < ".join(names)


class Watch:
    """One fit's timings and its sync check, shared by the ``Open`` and ``Close`` callbacks."""

    def __init__(self, monitors: list[Any], mode: str, cuda: bool, skip: int) -> None:
        self.monitors, self.mode, self.cuda, self.skip = monitors, mode, cuda, skip
        self.checking = False
        self.checked = self.due = 0
        self.syncs: list[str] = []  # where each sync on a checked batch came from
        self.current: list[str] = []  # syncs of the batch being checked
        self.unexpected: list[dict[str, Any]] = []  # checked batches in which a monitor logged
        self.warned: Counter[str] = Counter()
        self.starts: list[tuple[float, bool]] = []  # (batch start, checked)
        self.train_start = self.loop_start = self.loop_end = None
        self.loop_steps = 0
        self._events: list[int] = []

    def check(self, on: bool) -> None:
        if self.cuda and on != self.checking:
            torch.cuda.set_sync_debug_mode(self.mode if on else "default")
        self.checking = on

    def open_batch(self, step: int, batches_left: int) -> None:
        quiet = not _due_soon(self.monitors, step, batches_left)
        self.starts.append((time.perf_counter(), quiet))
        if not quiet:
            self.due += 1
            return
        self.checked += 1
        self.current, self._events = [], [m.events for m in self.monitors]
        self.check(True)

    def close_batch(self, step: int) -> None:
        if not self.checking:
            return
        self.check(False)
        logged = [
            type(m).__name__
            for m, n in zip(self.monitors, self._events, strict=True)
            if m.events > n
        ]
        if logged:  # an event after all: its syncs are the event's, not a quiet step's
            self.unexpected.append({"step": step, "monitors": logged, "syncs": len(self.current)})
        else:
            self.syncs += self.current
        self.current = []

    def showwarning(self, message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        """``warnings.showwarning`` during a fit: syncs are counted, the rest kept once."""
        text = str(message)
        if SYNC_MESSAGE in text:  # raised only while checking (the debug mode is off otherwise)
            if self.checking:
                self.current.append(_frames(traceback.extract_stack()[:-1]))
        elif not issubclass(category, DeprecationWarning | FutureWarning):
            self.warned[f"{category.__name__}: {text[:200]}"] += 1

    @contextlib.contextmanager
    def catching(self) -> Iterator[None]:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = self.showwarning
            yield


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


class Open(Callback):
    """First callback: starts the clocks and the sync check of a quiet batch."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _sync(self.watch.cuda)
        self.watch.train_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        w = self.watch
        if trainer.global_step == w.skip:  # the measured loop starts here
            _sync(w.cuda)
            w.loop_start = time.perf_counter()
        w.open_batch(trainer.global_step, trainer.num_training_batches - batch_idx)


class Close(Callback):
    """Last callback: ends the sync check of the batch, and the clock of the loop."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        w = self.watch
        w.close_batch(trainer.global_step)
        if trainer.global_step >= trainer.max_steps and w.loop_start is not None:
            _sync(w.cuda)
            w.loop_end, w.loop_steps = time.perf_counter(), trainer.global_step - w.skip

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.watch.check(False)


# ------------------------------------------------------------------- one fit
def _monitor_figures(monitor: Any) -> dict[str, Any]:
    budget, schedule = getattr(monitor, "budget", None), monitor.schedule
    return {
        "events": monitor.events,
        "timings_s": {k: round(v, 5) for k, v in monitor.timings.items()},
        "disabled": monitor.disabled,
        "interval": getattr(schedule, "interval", schedule.every_n_steps),
        "own_event_steps": getattr(budget, "event_steps", None),  # the budget's estimate
    }


def fit_once(
    args: argparse.Namespace,
    label: str,
    rep: int,
    steps: int,
    *,
    preset_every: int | None = None,
    monitored: bool,
    log_loss: bool = False,
) -> dict[str, Any]:
    """One fit; returns its figures (``error`` set when it broke)."""
    cuda = args.device == "cuda"
    monitors = []
    if monitored:
        monitors = callbacks(
            "standard", **({"every_n_steps": preset_every} if preset_every else {})
        )
    watch = Watch(monitors, args.sync_mode, cuda, skip=max(1, steps // 10))
    model = Classifier(args.model, args.image_size, log_loss)
    train = DataLoader(
        RandomImages(steps * args.batch, args.image_size, seed=0),
        batch_size=args.batch,
        collate_fn=_as_batch,
    )
    val = DataLoader(  # enough items for every probe; validation runs --val-batches of them
        RandomImages(max(args.val_batches * args.batch, 64), args.image_size, seed=1),
        batch_size=args.batch,
        collate_fn=_as_batch,
    )
    gc.collect()  # the previous fit's tensors, before the memory baseline
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    mem_start = torch.cuda.memory_allocated() / MIB if cuda else None
    error, begun = None, time.perf_counter()
    with watch.catching():
        try:
            trainer = L.Trainer(
                accelerator="gpu" if cuda else "cpu",
                devices=1,
                precision="bf16-mixed",
                max_steps=steps,
                max_epochs=1,
                limit_val_batches=args.val_batches,
                num_sanity_val_steps=0,
                log_every_n_steps=min(50, steps),
                logger=TensorBoardLogger(args.tmp, name=label, version=rep),
                callbacks=[Open(watch), *monitors, Close(watch)],
                default_root_dir=args.tmp,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            trainer.fit(model, train, val)
        except Exception as err:  # kept in the figures; a sync in "error" mode lands here
            where = _frames(traceback.extract_tb(err.__traceback__))
            error = f"{type(err).__name__}: {str(err)[:300]} at {where}"
            if SYNC_MESSAGE in str(err):
                watch.syncs.append(where)
        finally:
            watch.check(False)
    _sync(cuda)
    end = time.perf_counter()
    quiet = [b[0] - a[0] for a, b in itertools.pairwise(watch.starts) if a[1]]
    record = {
        "label": label,
        "rep": rep,
        "steps": steps,
        "error": error,
        "wall_s": None if watch.train_start is None else round(end - watch.train_start, 4),
        "loop_step_ms": None
        if not watch.loop_steps
        else round(1e3 * (watch.loop_end - watch.loop_start) / watch.loop_steps, 3),
        "quiet_step_ms": round(1e3 * statistics.median(quiet), 3) if quiet else None,
        "checked_batches": watch.checked,
        "due_batches": watch.due,
        "syncs": len(watch.syncs),
        "sync_sites": dict(Counter(watch.syncs)),
        "unexpected_events": watch.unexpected[:5],
        "peak_mem_mib": round(torch.cuda.max_memory_allocated() / MIB, 1) if cuda else None,
        "mem_start_mib": None if mem_start is None else round(mem_start, 1),
        "sink_busy_s": round(monitors[0].sink.busy_seconds, 4) if monitors else None,
        "monitors": {type(m).__name__: _monitor_figures(m) for m in monitors},
        "warnings": [w for w, _ in watch.warned.most_common(6)],
        "seconds": round(end - begun, 2),
    }
    events = ", ".join(f"{n[:-7]} {f['events']}" for n, f in record["monitors"].items())
    say(
        f"{label} rep {rep}: wall {record['wall_s']} s, step {record['loop_step_ms']} ms, "
        f"quiet {record['quiet_step_ms']} ms, syncs {record['syncs']} on "
        f"{watch.checked}/{watch.checked + watch.due} checked batches, peak "
        f"{record['peak_mem_mib']} MiB, sink {record['sink_busy_s']} s"
        + (f", events: {events}" if events else "")
        + (f", ERROR {error}" if error else "")
    )
    return record


# ------------------------------------------------------------------- summary
def _median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 4) if found else None


def _ratios(runs: list[dict], key: str) -> dict[str, Any] | None:
    """Each standard run over the mean of the bare runs beside it (same rep and the next)."""
    bare = {r["rep"]: r[key] for r in runs if r["label"] == "bare" and r[key]}
    out = []
    for run in (r for r in runs if r["label"] == "standard" and r[key]):
        beside = [bare[i] for i in (run["rep"], run["rep"] + 1) if i in bare]
        if beside:
            out.append(run[key] / statistics.mean(beside))
    if not out:
        return None
    return {"median": round(statistics.median(out), 4), "each": [round(x, 4) for x in out]}


def _per_event(runs: list[dict], step_ms: float | None, bare_wall: float | None) -> dict:
    """Per monitor: time per event on the training thread (ms, bare steps), phases, window."""
    events: Counter[str] = Counter()
    seconds: dict[str, Counter[str]] = {}
    for run in runs:
        for name, fig in run["monitors"].items():
            events[name] += fig["events"]
            seconds.setdefault(name, Counter()).update(fig["timings_s"])
    out: dict[str, Any] = {}
    for name, spent in seconds.items():
        n = events[name]
        ms = {k: round(1e3 * v / n, 3) for k, v in spent.items()} if n else {}
        total, window = ms.pop("total", None), ms.pop("window", None)
        out[name] = {
            "events": n,
            "ms_per_event": total,
            "steps_per_event": round(total / step_ms, 3) if total and step_ms else None,
            "phases_ms": ms,
            **({"window_ms_per_event": window} if window is not None else {}),  # beside total
            "own_event_steps": [r["monitors"][name]["own_event_steps"] for r in runs],
        }
    total_events = sum(events.values())
    if bare_wall and total_events:  # the dense run's extra wall time, spread over its events
        extra = sum(r["wall_s"] - bare_wall for r in runs)
        out["all"] = {
            "events": total_events,
            "wall_ms_per_event": round(1e3 * extra / total_events, 3),
        }
    return out


def _sync_verdict(runs: list[dict], cuda: bool) -> dict[str, Any]:
    """Syncs on checked batches: none, or none beyond what the bare runs do at the same sites.

    A site the bare runs sync at (Lightning's own) may sync in a monitored run as often
    as the bare runs' rate per checked batch, or their count per fit, allows.
    """
    if not cuda:
        return {"passed": None, "note": "not checked: set_sync_debug_mode needs CUDA"}
    bare = [r for r in runs if r["label"] == "bare"]
    watched = [r for r in runs if r["monitors"]]
    checked = sum(r["checked_batches"] for r in bare)
    beyond = {}
    for site, count in sum((Counter(r["sync_sites"]) for r in watched), Counter()).items():
        at_site = [r["sync_sites"].get(site, 0) for r in bare]
        per_batch = sum(at_site) / max(checked, 1) * sum(r["checked_batches"] for r in watched)
        allowed = max(per_batch, max(at_site, default=0) * len(watched))
        if count > allowed:
            beyond[site] = count
    logging_run = next((r for r in runs if r["label"] == "warmup_bare_logging"), None)
    return {
        "passed": bool(bare and watched and not beyond),
        "lightning_syncs_by_itself": any(r["syncs"] for r in bare),
        "bare": {"syncs": sum(r["syncs"] for r in bare), "checked_batches": checked},
        "monitored": {
            "syncs": sum(r["syncs"] for r in watched),
            "checked_batches": sum(r["checked_batches"] for r in watched),
        },
        "beyond_bare": beyond,
        "lightning_logging_syncs": None if logging_run is None else logging_run["syncs"],
        "sites": {f"{r['label']}{r['rep']}": r["sync_sites"] for r in runs if r["syncs"]},
        "unexpected_events": [
            e | {"run": r["label"]} for r in runs for e in r["unexpected_events"]
        ],
    }


def summarize(args: argparse.Namespace, runs: list[dict], skipped: list[str]) -> dict:
    ok = [r for r in runs if not r["error"]]
    bare, standard, dense = (
        [r for r in ok if r["label"] == k] for k in ("bare", "standard", "dense")
    )
    step_ms = _median([r["loop_step_ms"] for r in bare])
    peak = {
        k: _median([r["peak_mem_mib"] for r in rs])
        for k, rs in (("bare", bare), ("standard", standard), ("dense", dense))
    }
    sync = _sync_verdict(runs, args.device == "cuda")
    failures = [f"{r['label']} rep {r['rep']}: {r['error']}" for r in runs if r["error"]]
    failures += [
        f"{name} stepped aside in {r['label']} rep {r['rep']}: "
        + next((w for w in r["warnings"] if name in w and "steps aside" in w), "")
        for r in runs
        for name, fig in r["monitors"].items()
        if fig["disabled"]
    ]
    if sync["passed"] is False:
        failures.append(f"sync check failed: {sync['beyond_bare'] or sync['monitored']}")
    return {
        "ok": not failures and not skipped,
        "failures": failures,
        "skipped": skipped,
        "wall_ratio": _ratios(ok, "wall_s"),
        "loop_ratio": _ratios(ok, "loop_step_ms"),
        "quiet_step_ratio": _ratios(ok, "quiet_step_ms"),
        "bare_step_ms": step_ms,
        "per_event": _per_event(standard, step_ms, None),
        "per_event_dense": _per_event(dense, step_ms, _median([r["wall_s"] for r in bare])),
        "sink_busy_s": {
            k: _median([r["sink_busy_s"] for r in rs])
            for k, rs in (("standard", standard), ("dense", dense))
        },
        "peak_mem_mib": peak,
        "peak_mem_added_mib": None
        if None in (peak["bare"], peak["standard"])
        else round(peak["standard"] - peak["bare"], 1),
        "sync": sync,
    }


def _row(run: dict[str, Any]) -> dict[str, Any]:
    """A run without its per-monitor details and warnings (those are in the JSON file)."""
    keep = {k: v for k, v in run.items() if k not in ("monitors", "warnings", "sync_sites")}
    return keep | {"events": {n: f["events"] for n, f in run["monitors"].items()}}


def environment(args: argparse.Namespace) -> dict[str, Any]:
    cuda = args.device == "cuda"
    return {
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "dry_run": not cuda,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        **{k: getattr(args, k) for k in ARGS},
        "precision": "bf16-mixed",
    }


# ------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--dry-run", action="store_true", help="the CPU dry run")
    parser.add_argument("--model", help="torchvision model name (resnet50; dry run resnet18)")
    parser.add_argument("--steps", type=int, help="optimizer steps per fit (300; dry run 30)")
    parser.add_argument("--reps", type=int, default=2, help="bare/standard pairs")
    parser.add_argument("--batch", type=int, help="batch size (64; dry run 4)")
    parser.add_argument("--image-size", type=int, help="image side (224; dry run 64)")
    parser.add_argument("--val-batches", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, help="per warm-up fit, 0: none (30; 10)")
    parser.add_argument("--dense-every", type=int, help="dense run's interval, 0: none (25; 15)")
    parser.add_argument("--sync-mode", choices=["warn", "error"], default="warn")
    parser.add_argument(
        "--budget-minutes", type=float, default=7.0, help="skip the fits that would end past this"
    )
    parser.add_argument("--out", type=Path, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    setup = GPU_SETUP if args.device == "cuda" else DRY_SETUP
    for key, value in setup.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    name = "gpu_check.json" if args.device == "cuda" else "gpu_check_dry_run.json"
    args.out = args.out or RESULTS / name
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, int, int, dict[str, Any]]]:
    """The fits in order: ``(label, rep, steps, fit_once keywords)``."""
    fits = []
    if args.warmup_steps:
        warm = args.warmup_steps
        fits += [
            ("warmup_bare_logging", 0, warm, {"monitored": False, "log_loss": True}),
            ("warmup_standard", 0, warm, {"monitored": True, "preset_every": max(1, warm // 3)}),
        ]
    for rep in range(args.reps):
        fits += [
            ("bare", rep, args.steps, {"monitored": False}),
            ("standard", rep, args.steps, {"monitored": True}),
        ]
    if args.dense_every:
        fits.append(("dense", 0, args.steps, {"monitored": True, "preset_every": args.dense_every}))
    return fits


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_float32_matmul_precision("high")
    result: dict[str, Any] = {"environment": environment(args)}
    say(
        f"{result['environment']['device']}: {args.model}, batch {args.batch}, "
        f"{args.image_size} px, {args.steps} steps x {args.reps} reps -> {args.out}"
    )
    runs: list[dict[str, Any]] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        args.tmp = tmp
        for label, rep, steps, kwargs in plan(args):
            longest = max((r["seconds"] for r in runs if r["steps"] == steps), default=0.0)
            if time.perf_counter() - START + 1.2 * longest > 60 * args.budget_minutes:
                skipped.append(f"{label} rep {rep}")
                say(f"skipped {label} rep {rep}: past --budget-minutes {args.budget_minutes}")
                continue
            runs.append(fit_once(args, label, rep, steps, **kwargs))
            result.update(summary=summarize(args, runs, skipped), runs=runs)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    summary = result["summary"]
    say(f"wall ratio {summary['wall_ratio']}, sync check passed: {summary['sync']['passed']}")
    # printed: every figure but the per-run details, so that it fits a 12 KB output tail
    printed = result | {"runs": [_row(r) for r in runs]}
    print(json.dumps(printed, separators=(",", ":")))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
