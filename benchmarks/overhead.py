"""Training-time overhead of the monitors, measured side by side in one process.

The MNIST reference CNN (``MNISTClassifier``, batch 64) trains for ``--steps``
optimizer steps from the same seed, once per configuration: bare (no monitors),
each preset (``light``, ``standard``, ``full``) and each monitor alone, all at
their default arguments and frequencies, plus the peer ``wandb.watch(model,
log="all", log_freq=N)`` (offline) at ActivationMonitor's frequency, and the
standard monitors at their class defaults (``standard@class-defaults``, the
preset before tuning). Runs alternate A/B: bare, A, bare, B, bare, ... in each
of ``--repeats`` repetitions (the order rotates every repetition), and each run
is compared with the bare runs right before and after it, so that drift on a
shared machine cancels.
Data: synthetic digits (default; ``--train-size`` digits, MNIST's 55,000 by
default, so epochs and per-epoch monitors run at MNIST's pace) or the shared
real MNIST files (``--mnist DIR``: the 10k test digits as 8k train / 2k val).

Reported per configuration:

* wall-time ratio vs bare (training loop, ``on_train_start`` to ``on_fit_end``,
  validation included): median over repetitions, with min and max, each run
  divided by the mean of its two neighbouring bare runs (the ``bare`` row: each
  bare run over the one before it, the noise floor);
* work %: the monitors' own measured time (``timings["total"]`` of the logging
  events plus ActivationMonitor's ``timings["window"]``, its statistics on the
  hooked batches before each log; for wandb.watch, the time in its histograms,
  ``TorchHistory.log_tensor_stats``) as a share of the bare run's time (robust to
  drift; leaves out the hook calls themselves);
* the quiet-step ratio: the median duration of training batches on which no
  monitor worked and no hook was attached, over the bare run's median batch;
* sink %: the time the sink's thread spent drawing and encoding images off the
  training thread (``Sink.busy_seconds``), as a share of the bare run's time; the
  wall time includes waiting for it at the end of fit;
* per logging event of every monitor: ms in capture / compute / render / write
  (``Monitor.timings``; ``other`` = the rest of ``total``; ``window``: the
  window batches' statistics per event, not part of ``total``; ``sink``: the
  sink's thread, for a monitor alone);
* event-file bytes per 1,000 steps beyond the bare run's own (every file in the
  run's log directory; the wandb row: its offline run directory);
* resident memory (RSS) growth over ``--events`` logging events of the
  ``standard`` monitors, all at ``every_n_steps=1`` (validation every step too,
  for the OverfittingMonitor).

A warm-up fit first runs every monitor twice, so one-time costs of the process
(Captum's lazy import, about 0.35 s, font and colormap tables) fall outside the
measured runs. Intra-op threads are pinned (``--threads``, default 1) for stable timings on a
shared CPU; the count is printed and saved.

Usage::

    python benchmarks/overhead.py [--steps 1000] [--repeats 3] [--mnist DIR] [--quick]
        [--configs bare,standard,...] [--events 500]

Prints a table and writes ``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.sinks import Sink
from lightning_cnnviz.presets import _SETS, PRESETS, callbacks
from lightning_cnnviz.reference import MNISTClassifier, MNISTDataModule, SyntheticDigitsDataModule

RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
MONITORS = {cls.__name__: cls for cls, _ in _SETS["full"]}
PHASES = ("capture", "compute", "render", "write")
COLUMNS = (*PHASES, "other", "total", "window", "sink")  # per-event table
WANDB = "wandb.watch"
DEFAULTS = "standard@class-defaults"  # the standard monitors untuned (the preset before tuning)
MB = 1 << 20


# ------------------------------------------------------------------- data and one run
def data_module(args: argparse.Namespace, root: Path) -> L.LightningDataModule:
    """Synthetic digits, or the shared MNIST test files laid out as torchvision's ``root``."""
    if args.mnist is None:
        data = SyntheticDigitsDataModule(
            train_size=args.train_size, val_size=args.val_size, batch_size=64, seed=0
        )
    else:
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for kind in ("images-idx3", "labels-idx1"):
            for split in ("train", "t10k"):
                link = raw / f"{split}-{kind}-ubyte.gz"
                if not link.exists():
                    link.symlink_to(Path(args.mnist).resolve() / f"t10k-{kind}-ubyte.gz")
        data = MNISTDataModule(root=str(root), val_size=2000, batch_size=64, download=False)
    data.setup("fit")  # once: every run reuses the same tensors
    return data


class Clock(L.Callback):
    """Times the run and each training batch; ``first`` goes before the monitors, the other after.

    A batch is *quiet* when no monitor's timings moved during it and no hook beyond the
    run's baseline was attached once every ``on_train_batch_start`` had run.
    """

    def __init__(self, monitors: list[Any], first: bool, log: dict[str, Any]) -> None:
        self.monitors, self.first, self.record = monitors, first, log

    def _work(self) -> float:
        return sum(monitor_seconds(m.timings) for m in self.monitors)

    def on_train_start(self, trainer, pl_module):
        if self.first:
            self.record.update(start=time.perf_counter(), cpu_start=time.process_time())
            self.record.update(batches=[], hooks=_hooks(pl_module))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first:
            self.record["t0"], self.record["w0"] = time.perf_counter(), self._work()
        else:
            self.record["hooked"] = _hooks(pl_module) > self.record["hooks"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.first:
            quiet = not self.record["hooked"] and self._work() == self.record["w0"]
            self.record["batches"].append((time.perf_counter() - self.record["t0"], quiet))

    def on_fit_end(self, trainer, pl_module):
        if not self.first:
            self.record.update(end=time.perf_counter(), cpu_end=time.process_time())


def monitor_seconds(timings: dict[str, float]) -> float:
    """A monitor's own time: its logging events plus, for ActivationMonitor, its window hooks."""
    return timings.get("total", 0.0) + timings.get("window", 0.0)


def _hooks(model: torch.nn.Module) -> int:
    return sum(hook_count(model).values())


def monitors_of(config: str) -> list[Any]:
    if config in PRESETS:
        return callbacks(config)
    if config == DEFAULTS:
        return [cls() for cls, _ in _SETS["standard"]]
    if config == "warmup":  # every monitor logs at steps 10 and 20: one-time costs paid here
        return callbacks("full", every_n_steps=10)
    if config in MONITORS:
        return [MONITORS[config]()]
    return []


def run(config: str, data: L.LightningDataModule, root: Path, steps: int, every: int) -> dict:
    """One fit of ``steps`` steps; the time, batches, monitors' timings and bytes written."""
    L.seed_everything(0, verbose=False)
    data._shuffle.manual_seed(data.seed)  # the same batch order in every run
    model, monitors, log = MNISTClassifier(), monitors_of(config), {}
    wandb_run, peer = None, contextlib.nullcontext({})
    if config == WANDB:
        import wandb

        wandb_run = wandb.init(project="cnnviz-overhead", dir=str(root), mode="offline")
        wandb.watch(model, log="all", log_freq=every)
        peer = wandb_work(2 * len(list(model.parameters())))
    trainer = L.Trainer(
        default_root_dir=root, max_steps=steps, max_epochs=-1, num_sanity_val_steps=0,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        logger=TensorBoardLogger(root, name="tb"),
        callbacks=[Clock(monitors, True, log), *monitors, Clock(monitors, False, log)],
    )  # fmt: skip
    gc.collect()
    with warnings.catch_warnings(), peer as peer_timings:
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    if wandb_run is not None:
        wandb.unwatch(model)
        wandb_run.finish()
    written = sum(
        f.stat().st_size for f in root.rglob("*") if f.is_file() and "wandb" not in str(f)
    )
    if config == WANDB:
        written += sum(f.stat().st_size for f in (root / "wandb").rglob("*") if f.is_file())
    durations = [d for d, _ in log["batches"][5:]]  # past the first batches' warm-up
    quiet = [d for d, q in log["batches"][5:] if q]
    return {
        "seconds": log["end"] - log["start"],
        "cpu_seconds": log["cpu_end"] - log["cpu_start"],
        "step_ms": 1000 * statistics.median(durations),
        "quiet_step_ms": 1000 * statistics.median(quiet) if quiet else None,
        "quiet_steps": len(quiet),
        "bytes": written,
        "sink_seconds": Sink.of(trainer).busy_seconds,
        "monitors": {
            type(m).__name__: {"events": m.events, "disabled": m.disabled, **dict(m.timings)}
            for m in monitors
        }
        | ({WANDB: peer_timings} if peer_timings else {}),
    }


@contextlib.contextmanager
def wandb_work(tensors_per_event: int) -> Any:
    """Time wandb.watch's own work as ``Monitor.timings`` time ours: its histograms.

    ``TorchHistory.log_tensor_stats`` is what its hooks call on a logging step, once
    per parameter and once per gradient (``tensors_per_event`` calls per event).
    """
    from wandb.integration.torch.wandb_torch import TorchHistory

    original, timings = TorchHistory.log_tensor_stats, {"events": 0.0, "total": 0.0}

    def timed(self: Any, tensor: torch.Tensor, name: str) -> None:
        start = time.perf_counter()
        try:
            original(self, tensor, name)
        finally:
            timings["total"] += time.perf_counter() - start
            timings["events"] += 1 / tensors_per_event

    TorchHistory.log_tensor_stats = timed
    try:
        yield timings
    finally:
        TorchHistory.log_tensor_stats = original


# ------------------------------------------------------------------- memory
def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def trimmed_rss_mb() -> float:
    """RSS after a full collection and returning the allocator's free pages to the OS."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mb()


class MemoryProbe(L.Callback):
    def __init__(self, warmup: int, out: dict[str, float]) -> None:
        self.warmup, self.out = warmup, out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup:
            gc.collect()
            self.out.update(rss_start=rss_mb(), trimmed_start=trimmed_rss_mb())

    def on_fit_end(self, trainer, pl_module):
        gc.collect()
        self.out.update(rss_end=rss_mb(), trimmed_end=trimmed_rss_mb())


def memory_growth(data: L.LightningDataModule, root: Path, events: int, warmup: int = 10) -> dict:
    """RSS before and after ``events`` logging events of every ``standard`` monitor."""
    L.seed_everything(0, verbose=False)
    monitors, out = callbacks("standard", every_n_steps=1), {}
    trainer = L.Trainer(
        default_root_dir=root, max_steps=warmup + events, max_epochs=-1, num_sanity_val_steps=0,
        limit_val_batches=1, val_check_interval=1, check_val_every_n_epoch=None,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        logger=TensorBoardLogger(root, name="tb"), callbacks=[*monitors, MemoryProbe(warmup, out)],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(MNISTClassifier(), datamodule=data)
    out["events"] = {type(m).__name__: m.events for m in monitors}
    out["growth_mb"] = out["rss_end"] - out["rss_start"]
    out["growth_trimmed_mb"] = out["trimmed_end"] - out["trimmed_start"]
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


# ------------------------------------------------------------------- summary
def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} CPUs visible, shared"


def summarize(runs: dict[str, list[dict]], steps: int) -> dict[str, dict]:
    """Each run against its bare reference (the mean of the bare runs either side of it)."""
    rows = {}
    for config, all_results in runs.items():
        results = [r for r in all_results if "ref" in r]
        pairs = [(r, r["ref"]) for r in results]
        ratios = [r["seconds"] / b["seconds"] for r, b in pairs]
        cpu = [r["cpu_seconds"] / b["cpu_seconds"] for r, b in pairs]
        quiet = [r["quiet_step_ms"] / b["step_ms"] for r, b in pairs if r["quiet_step_ms"]]
        work = [
            sum(monitor_seconds(m) for m in r["monitors"].values()) / b["seconds"] for r, b in pairs
        ]
        extra = statistics.median(r["bytes"] - b["bytes"] for r, b in pairs)
        sink = [r.get("sink_seconds", 0.0) / b["seconds"] for r, b in pairs]
        phases: dict[str, dict[str, float]] = {}
        for name in results[0]["monitors"]:
            per = [r["monitors"][name] for r in results]
            events = sum(p["events"] for p in per)
            ms = {k: 1000 * sum(p.get(k, 0.0) for p in per) / max(events, 1) for k in PHASES}
            ms["total"] = 1000 * sum(p.get("total", 0.0) for p in per) / max(events, 1)
            ms["other"] = ms["total"] - sum(ms[k] for k in PHASES)
            ms["window"] = 1000 * sum(p.get("window", 0.0) for p in per) / max(events, 1)
            if len(results[0]["monitors"]) == 1:  # alone: the sink's thread worked for it
                off = sum(r.get("sink_seconds", 0.0) for r in results)
                ms["sink"] = 1000 * off / max(events, 1)
            phases[name] = {"events_per_run": events / len(per), "ms_per_event": ms}
        rows[config] = {
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "ratios": ratios,
            "cpu_ratio_median": statistics.median(cpu),
            "cpu_ratio_min": min(cpu),
            "cpu_ratio_max": max(cpu),
            "monitor_work_share": statistics.median(work),
            "sink_thread_share": statistics.median(sink),
            "quiet_step_ratio": statistics.median(quiet) if quiet else None,
            "quiet_steps_per_run": statistics.median(r["quiet_steps"] for r in results),
            "seconds": [r["seconds"] for r in results],
            "bytes_per_1000_steps": 1000 * extra / steps,
            "mb_per_10000_steps": 10_000 * extra / steps / MB,
            "monitors": phases,
        }
    return rows


def print_table(result: dict) -> None:
    s = result["settings"]
    print(
        f"\nlightning-cnnviz overhead: {s['data']}, batch 64, {s['steps']} steps/run, "
        f"{s['repeats']} repetitions, torch threads {s['threads']}, {s['machine']}"
    )
    bare = result["configs"]["bare"]
    print(f"bare: {statistics.median(bare['seconds']):.1f} s/run, "
          f"{s['bare_step_ms']:.1f} ms/batch (median)\n")  # fmt: skip
    print(f"{'':30s} {'wall-time ratio':>20s} {'CPU-time ratio':>20s}")
    print(f"{'configuration':30s} {'median':>6s} {'min':>6s} {'max':>6s} {'median':>6s} "
          f"{'min':>6s} {'max':>6s} {'work%':>6s} {'sink%':>6s} {'quiet':>6s} "
          f"{'KB/1k st':>9s} {'MB/10k':>7s}")  # fmt: skip
    for config, row in result["configs"].items():
        quiet = row["quiet_step_ratio"]
        label = "bare vs bare (noise floor)" if config == "bare" else config
        cells = [row[f"{kind}_{stat}"] for kind in ("ratio", "cpu_ratio")
                 for stat in ("median", "min", "max")]  # fmt: skip
        print(
            f"{label:30s} "
            + " ".join(f"{c:6.3f}" for c in cells)
            + f" {100 * row['monitor_work_share']:6.2f}"
            f" {100 * row.get('sink_thread_share', 0.0):6.2f} "
            f"{'' if quiet is None else f'{quiet:6.3f}':>6s} "
            f"{row['bytes_per_1000_steps'] / 1024:9.1f} {row['mb_per_10000_steps']:7.2f}"
        )
    print(
        "  wall/CPU-time ratio: vs the neighbouring bare runs (CPU: this process's CPU time);"
        " work%: the monitors' own time over bare;\n  sink%: the sink's thread (drawing and"
        " encoding off the training thread) over bare;\n  quiet: median batch without monitor work"
        " or hooks over bare's median batch; KB/1k st, MB/10k: bytes written beyond bare"
    )
    for note in result["notes"]:
        print(f"  note: {note}")
    print("\nper logging event (ms), each monitor alone, within `standard`, and wandb.watch's")
    print(f"{'monitor':40s} {'ev/run':>6s} " + " ".join(f"{p:>8s}" for p in COLUMNS))
    for config, row in result["configs"].items():
        if config not in MONITORS and config not in ("standard", WANDB):
            continue
        for name, m in row["monitors"].items():
            label = f"  in standard: {name}" if config == "standard" else name
            ms = m["ms_per_event"]
            cells = " ".join(f"{ms.get(p, 0.0):8.1f}" for p in COLUMNS)
            print(f"{label:40s} {m['events_per_run']:6.1f} {cells}")
    mem = result.get("memory")
    if mem:
        print(
            f"\nRSS over {mem['n_events']} logging events of each `standard` monitor "
            f"(every_n_steps=1): {mem['rss_start']:.0f} -> {mem['rss_end']:.0f} MB, growth "
            f"{mem['growth_mb']:+.1f} MB (after malloc_trim: {mem['growth_trimmed_mb']:+.1f} MB)"
        )


# ------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=55_000, help="synthetic train digits")
    parser.add_argument("--val-size", type=int, default=5_000, help="synthetic val digits")
    parser.add_argument("--mnist", type=Path, default=None, help="dir of the MNIST t10k gz files")
    parser.add_argument("--events", type=int, default=500, help="logging events, memory loop")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", default=None, help="comma-separated subset (bare is added)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:  # written next to the results, git-ignored
        args.steps, args.repeats, args.events = 60, 1, 20
        args.train_size, args.val_size = 1280, 256
        args.out = RESULTS.with_name("overhead.quick.tmp") if args.out == RESULTS else args.out
    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_cnnviz"):
        logging.getLogger(name).setLevel(logging.ERROR)  # run banners, summaries
    every = ActivationMonitor.default_every_n_steps
    configs = ["bare", *PRESETS, DEFAULTS, *MONITORS, WANDB]
    if args.configs:
        configs = ["bare", *(c for c in args.configs.split(",") if c != "bare")]
    notes = []
    if WANDB in configs:
        try:
            import wandb  # noqa: F401

            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
        except ImportError:
            configs.remove(WANDB)
            notes.append(f"{WANDB}: skipped, wandb is not installed (pip install wandb)")
    if WANDB in configs:
        notes.append(f"{WANDB}: wandb.watch(model, log='all', log_freq={every}), offline")
    with tempfile.TemporaryDirectory(prefix="cnnviz-overhead-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("WANDB_DIR", str(root))
        data = data_module(args, root / "data")
        run("warmup", data, root / "warmup", 20, every)  # lazy imports (Captum), caches
        runs: dict[str, list[dict]] = {c: [] for c in configs}
        for rep in range(args.repeats):  # bare, A, bare, B, bare, ... (order rotates)
            others = [c for c in configs if c != "bare"]
            others = others[rep % len(others) :] + others[: rep % len(others)]
            before = run("bare", data, root / f"r{rep}-bare-0", args.steps, every)
            runs["bare"].append(before)
            for i, config in enumerate(others, 1):
                result = run(config, data, root / f"r{rep}-{config}", args.steps, every)
                after = run("bare", data, root / f"r{rep}-bare-{i}", args.steps, every)
                keys = ("seconds", "cpu_seconds", "step_ms", "bytes")
                result["ref"] = {k: (before[k] + after[k]) / 2 for k in keys}
                after["ref"] = before  # bare vs the bare before it: the noise floor
                runs[config].append(result)
                runs["bare"].append(after)
                before = after
                print(f"rep {rep} {config:30s} {result['seconds']:7.2f} s, "
                      f"bare {after['seconds']:7.2f} s", file=sys.stderr)  # fmt: skip
        memory = None
        if args.events > 0:
            memory = memory_growth(data, root / "memory", args.events)
            memory["n_events"] = args.events
    rows = summarize(runs, args.steps)
    for config, row in rows.items():
        idle = [name for name, m in row["monitors"].items() if m["events_per_run"] == 0]
        if idle:
            notes.append(f"{config}: no event in {args.steps} steps from {', '.join(idle)}")
    result = {
        "settings": {
            "steps": args.steps,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "data": type(data).__name__
            + (f" ({args.train_size} train / {args.val_size} val)" if args.mnist is None else ""),
            "train_batches_per_epoch": len(data.train_dataloader()),
            "bare_step_ms": statistics.median(r["step_ms"] for r in runs["bare"]),
            "machine": machine(),
            "torch": torch.__version__,
            "lightning": L.__version__,
            "python": platform.python_version(),
            "quick": args.quick,
        },
        "configs": rows,
        "memory": memory,
        "notes": notes,
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
