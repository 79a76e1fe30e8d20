"""Training-time overhead of the monitors on their automatic schedule, side by side in one process.

Models (``--models``, ``benchmarks/models.py``): the reference CNN (``MNISTClassifier``
at its defaults, 8,000 synthetic digits, 3 epochs, validation every epoch), torchvision
``resnet18`` (random 3x32x32 images, batch 32, 400 steps) and ``resnet50`` (random
3x64x64 images, batch 16). Each monitored configuration (``--configs``, default the
``standard`` preset at its defaults: the automatic schedule, the preset's 1% budget)
trains the same model from the same seed on the same batches as the bare run.

* Ratio models (reference, resnet18): runs alternate bare, A, bare, A, ..., bare
  (``--reps`` monitored runs per configuration, each between two bare runs); each
  monitored run is divided by the mean of its two neighbouring bare runs, so drift on a
  shared machine cancels, and each bare run by the one before it (the noise floor).
  Reported: the wall-time ratio (``on_train_start`` to ``on_fit_end``, validation and
  the wait for the sink's thread included; median, min, max), the CPU-time ratio, the
  monitors' own time on the training thread (``work %``: ``timings["total"]`` plus
  ActivationMonitor's ``timings["window"]``) and the sink's thread (``Sink.busy_seconds``,
  ``sink %``; its CPU time per event, ``sink_cpu_ms_per_event``, is the figure a loaded
  machine does not stretch) as shares of the bare run, the median batch on which no monitor worked
  (``quiet``) over bare's, bytes written beyond bare (MB per 10k steps), RSS growth over
  the run, and per monitor its events, the step of the first one and its final interval.
* Cost models (resnet50): one bare run, then one run with every monitor logging every
  10 steps (``--cost-every``): what one event costs.

Per event of each monitor (every model): ms on the training thread, (``total`` +
``window``) / events, as training steps (over the bare runs' median step); ``steady``:
the same without the first event (one-time work: call-site tracing, drawing the probes);
``budget``: the monitor's own estimate (``budget.event_steps``). The sink's thread:
ms per event of all monitors together. RSS growth over ``--events`` logging events of
each ``standard`` monitor at ``every_n_steps=1`` on the reference CNN closes the run.

A warm-up fit first runs every monitor twice (Captum's lazy import, font and colormap
tables) and each model a few bare steps. Intra-op threads are pinned (``--threads``, 1
or 2). On a shared machine wall ratios within a few % of 1 are not resolved: read the
noise floor row and the ``work %`` column (the monitors' own measured time).

Usage::

    python benchmarks/overhead.py [--models reference,resnet18,resnet50] [--reps 3]
        [--threads 1] [--configs standard] [--events 500] [--quick]

Prints a table and writes ``benchmarks/results/overhead.json`` (``--quick``: 1 rep, short
runs, under 5 minutes, written to ``overhead.quick.tmp``).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import Setup, reference, resnet

from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.schedule import Schedule
from lightning_cnnviz.core.sinks import Sink
from lightning_cnnviz.presets import _SETS, PRESETS, callbacks

RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
MONITORS = {cls.__name__: cls for cls, _ in _SETS["full"]}
MODELS = ("reference", "resnet18", "resnet50")
MB = 1 << 20


def auto_events(total_steps: int) -> int:
    """Events of the automatic schedule over a run of ``total_steps`` (no budget stretch)."""
    schedule = Schedule()
    schedule.fit_to(total_steps)
    return sum(schedule.due_on_step(step, -1) for step in range(1, total_steps + 1))


AUTO_10K = auto_events(10_000)


# ------------------------------------------------------------------- one run
def own_seconds(timings: dict[str, float]) -> float:
    """A monitor's own time: its events plus, for ActivationMonitor, its window batches."""
    return timings.get("total", 0.0) + timings.get("window", 0.0)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


class Clock(L.Callback):
    """Times the run and each batch, and notes when each monitor logged.

    ``first`` goes before the monitors, the other after them. A batch is *quiet* when no
    monitor's own time moved during it and no hook beyond the baseline was attached.
    """

    def __init__(self, monitors: list[Any], first: bool, log: dict[str, Any]) -> None:
        self.monitors, self.first, self.record = monitors, first, log

    def _work(self) -> float:
        return sum(own_seconds(m.timings) for m in self.monitors)

    def _notice_events(self) -> None:
        for m in self.monitors:
            steps = self.record["events"].setdefault(type(m).__name__, [])
            if m.events > len(steps):
                steps += [m.last_logged_step] * (m.events - len(steps))
                if len(steps) == m.events == 1:  # one-time work lands in the first event
                    self.record["first_ms"][type(m).__name__] = 1000 * own_seconds(m.timings)

    def on_train_start(self, trainer, pl_module):
        if self.first:
            self.record.update(rss_start=rss_mb(), batches=[], events={}, first_ms={})
            self.record.update(start=time.perf_counter(), cpu_start=time.process_time())
            self.record["hooks"] = sum(hook_count(pl_module).values())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first:
            self.record["t0"], self.record["w0"] = time.perf_counter(), self._work()
        else:
            self.record["hooked"] = sum(hook_count(pl_module).values()) > self.record["hooks"]
            self._notice_events()  # OverfittingMonitor logs here, after a validation

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.first:
            quiet = not self.record["hooked"] and self._work() == self.record["w0"]
            self.record["batches"].append((time.perf_counter() - self.record["t0"], quiet))
            self._notice_events()

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.first:
            self._notice_events()

    def on_fit_end(self, trainer, pl_module):
        if not self.first:
            self.record.update(end=time.perf_counter(), cpu_end=time.process_time())
            self.record["rss_end"] = rss_mb()
            self._notice_events()


def monitors_of(config: str, every: int | None = None) -> list[Any]:
    schedule = {} if every is None else {"every_n_steps": every}
    if config in PRESETS:
        return callbacks(config, **schedule)
    if config == "warmup":  # every monitor logs at steps 10 and 20: one-time costs paid here
        return callbacks("full", every_n_steps=10)
    if config in MONITORS:
        return [MONITORS[config](**schedule)]
    return []


def run(setup: Setup, config: str, root: Path, args: argparse.Namespace, **over: Any) -> dict:
    """One fit; its time, batches, the monitors' events and timings, bytes written, RSS."""
    L.seed_everything(0, verbose=False)
    setup.before_run()
    every = setup.cost_every if setup.kind == "cost" and config != "bare" else None
    model, monitors, log = setup.make_model(), monitors_of(config, every), {}
    trainer = L.Trainer(
        default_root_dir=root, num_sanity_val_steps=0, accelerator=args.accelerator, devices=1,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        logger=TensorBoardLogger(root, name="tb"),
        callbacks=[Clock(monitors, True, log), *monitors, Clock(monitors, False, log)],
        **(setup.trainer | over),
    )  # fmt: skip
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=setup.data)
    durations = [d for d, _ in log["batches"][5:]]  # past the first batches' warm-up
    quiet = [d for d, q in log["batches"][5:] if q]
    result = {
        "seconds": log["end"] - log["start"],
        "cpu_seconds": log["cpu_end"] - log["cpu_start"],
        "step_ms": 1000 * statistics.median(durations or [d for d, _ in log["batches"]]),
        "quiet_step_ms": 1000 * statistics.median(quiet) if quiet else None,
        "steps": trainer.global_step,
        "bytes": sum(f.stat().st_size for f in root.rglob("*") if f.is_file()),
        "sink_seconds": Sink.of(trainer).busy_seconds if monitors else 0.0,
        "sink_cpu_seconds": Sink.of(trainer).busy_cpu_seconds if monitors else 0.0,
        "rss_growth_mb": log["rss_end"] - log["rss_start"],
        "monitors": {
            type(m).__name__: {
                "events": m.events,
                "event_steps": log["events"].get(type(m).__name__, []),
                "first_event_ms": log["first_ms"].get(type(m).__name__),
                "disabled": m.disabled,
                "interval": m.schedule.interval,
                "stretch": m.schedule.factor,
                "budget_event_steps": m.budget.event_steps,
                "budget_step_ms": 1000 * (m.budget.step_seconds or 0.0),
                "timings": dict(m.timings),
            }
            for m in monitors
        },
    }
    del trainer, model, monitors
    gc.collect()
    return result


# ------------------------------------------------------------------- memory
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


def memory_growth(setup: Setup, root: Path, events: int, warmup: int = 10) -> dict:
    """RSS before and after ``events`` logging events of every ``standard`` monitor."""
    L.seed_everything(0, verbose=False)
    setup.before_run()
    monitors, out = callbacks("standard", every_n_steps=1), {}
    trainer = L.Trainer(
        default_root_dir=root, max_steps=warmup + events, max_epochs=-1, num_sanity_val_steps=0,
        limit_val_batches=1, val_check_interval=1, check_val_every_n_epoch=None,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        logger=TensorBoardLogger(root, name="tb"), callbacks=[*monitors, MemoryProbe(warmup, out)],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(setup.make_model(), datamodule=setup.data)
    out["n_events"] = events
    out["events"] = {type(m).__name__: m.events for m in monitors}
    out["growth_mb"] = out["rss_end"] - out["rss_start"]
    out["growth_trimmed_mb"] = out["trimmed_end"] - out["trimmed_start"]
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


# ------------------------------------------------------------------- summary
def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def per_event(results: list[dict], step_ms: float) -> dict[str, dict[str, Any]]:
    """Each monitor's events and cost per event, over the runs of one configuration."""
    out = {}
    for name in results[0]["monitors"]:
        per = [r["monitors"][name] for r in results]
        events = sum(p["events"] for p in per)
        own = 1000 * sum(own_seconds(p["timings"]) for p in per)
        firsts = [p["first_event_ms"] for p in per if p["first_event_ms"] is not None]
        later = events - len(firsts)
        window = 1000 * sum(p["timings"].get("window", 0.0) for p in per)
        ms = own / events if events else None
        steady = (own - sum(firsts)) / later if later else None
        out[name] = {
            "events_per_run": [p["events"] for p in per],
            "first_step": [p["event_steps"][0] if p["event_steps"] else None for p in per],
            "event_steps": per[0]["event_steps"],
            "interval": [p["interval"] for p in per],
            "stretch": [p["stretch"] for p in per],
            "ms_per_event": ms,
            "window_ms_per_event": window / events if events else None,
            "first_event_ms": median(firsts),
            "steady_ms_per_event": steady,
            "steps_per_event": ms / step_ms if ms is not None else None,
            "steady_steps_per_event": steady / step_ms if steady is not None else None,
            "budget_event_steps": median([p["budget_event_steps"] for p in per]),
            "budget_step_ms": median([p["budget_step_ms"] or None for p in per]),
            "timings_s": {
                k: statistics.mean(p["timings"].get(k, 0.0) for p in per) for k in per[0]["timings"]
            },
        }
    return out


def summarize(runs: dict[str, list[dict]], step_ms: float, ratio: bool) -> dict[str, dict]:
    """Each monitored run against its bare reference; per-monitor events and cost."""
    rows = {}
    for config, results in runs.items():
        pairs = [(r, r["ref"]) for r in results if "ref" in r]
        row: dict[str, Any] = {"seconds": [r["seconds"] for r in results]}
        if ratio and pairs:
            walls = [r["seconds"] / b["seconds"] for r, b in pairs]
            row |= {
                "ratio_median": statistics.median(walls), "ratio_min": min(walls),
                "ratio_max": max(walls), "ratios": walls,
                "cpu_ratio_median": statistics.median(
                    r["cpu_seconds"] / b["cpu_seconds"] for r, b in pairs),
                "quiet_step_ratio": median(
                    [r["quiet_step_ms"] / b["step_ms"] for r, b in pairs if r["quiet_step_ms"]]),
            }  # fmt: skip
        if config != "bare":
            bare = [b for _, b in pairs] or runs["bare"]
            bare_s = statistics.mean(b["seconds"] for b in bare)
            events = sum(m["events"] for r in results for m in r["monitors"].values())
            sink = sum(r["sink_seconds"] for r in results)
            extra = median([r["bytes"] - b["bytes"] for r, b in pairs]) if pairs else None
            steps, per_run = results[0]["steps"], events / len(results)
            per_10k = len(results[0]["monitors"]) * AUTO_10K  # events of a 10k-step run
            row |= {
                "work_share": median([sum(own_seconds(m["timings"]) for m in r["monitors"]
                                          .values()) / bare_s for r in results]),
                "sink_share": median([r["sink_seconds"] / bare_s for r in results]),
                "sink_ms_per_event": 1000 * sink / events if events else None,
                "sink_steps_per_event": 1000 * sink / events / step_ms if events else None,
                "sink_cpu_ms_per_event": 1000 * sum(r["sink_cpu_seconds"] for r in results)
                                         / events if events else None,
                "mb_per_10k_steps": None if extra is None else 10_000 * extra / steps / MB,
                "mb_per_10k_auto": None if extra is None else extra / per_run * per_10k / MB,
                "rss_growth_mb": median([r["rss_growth_mb"] for r in results]),
                "monitors": per_event(results, step_ms),
            }  # fmt: skip
        rows[config] = row
    return rows


def measure(setup: Setup, configs: list[str], root: Path, args: argparse.Namespace) -> dict:
    """Interleaved bare and monitored runs of one model (one pair for a cost model)."""
    run(setup, "bare", root / "warm", args, max_steps=min(10, setup.steps), max_epochs=1)
    runs: dict[str, list[dict]] = {c: [] for c in ["bare", *configs]}
    before = run(setup, "bare", root / "bare-0", args)
    runs["bare"].append(before)
    reps = args.reps if setup.kind == "ratio" else 1
    for rep in range(reps):
        for config in configs[rep % len(configs) :] + configs[: rep % len(configs)]:
            tag = f"{setup.name} rep {rep} {config}"
            result = run(setup, config, root / f"r{rep}-{config}", args)
            result["ref"] = before
            if setup.kind == "ratio":  # the bare run after it: drift cancels
                after = run(setup, "bare", root / f"r{rep}-{config}-bare", args)
                keys = ("seconds", "cpu_seconds", "step_ms", "bytes")
                result["ref"] = {k: (before[k] + after[k]) / 2 for k in keys}
                after["ref"], before = before, after  # bare over the bare before: noise floor
                runs["bare"].append(after)
            runs[config].append(result)
            print(f"{tag}: {result['seconds']:.1f} s, bare {before['seconds']:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    step_ms = statistics.median(r["step_ms"] for r in runs["bare"])
    return {
        "description": setup.description,
        "kind": setup.kind,
        "steps": setup.steps,
        "bare_step_ms": step_ms,
        "bare_seconds": [r["seconds"] for r in runs["bare"]],
        "configs": summarize(runs, step_ms, setup.kind == "ratio"),
    }


# ------------------------------------------------------------------- targets and table
def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def short(name: str) -> str:
    return name.removesuffix("Monitor")


def targets(result: dict) -> list[dict[str, Any]]:
    """The issue's targets beside what this run measured (rows only for what was run)."""
    rows = []

    def add(figure: str, target: str, measured: str, met: bool) -> None:
        rows.append({"figure": figure, "target": target, "measured": measured, "met": met})

    models = result["models"]
    for name, model in models.items():
        std = model["configs"].get("standard")
        if std is None:
            continue
        mons = std["monitors"]
        if "ratio_median" in std:
            noise = model["configs"]["bare"]
            add(
                f"`standard`, {name}: wall ratio vs bare, median [min, max]",
                "<= 1.01",
                f"{std['ratio_median']:.3f} [{std['ratio_min']:.3f}, {std['ratio_max']:.3f}];"
                f" noise floor {noise['ratio_median']:.3f} [{noise['ratio_min']:.3f},"
                f" {noise['ratio_max']:.3f}]; work {100 * std['work_share']:.2f}% +"
                f" sink {100 * std['sink_share']:.2f}%",
                std["ratio_median"] <= 1.01,
            )
            low = {n: min(m["events_per_run"]) for n, m in mons.items()}
            first = {n: max(s or 10**9 for s in m["first_step"]) for n, m in mons.items()}
            add(
                f"events per monitor, {name} (fewest over runs; step of the first)",
                ">= 8 each, first <= 50",
                ", ".join(f"{short(n)} {low[n]} (first {first[n]})" for n in low),
                min(low.values()) >= 8 and max(first.values()) <= 50,
            )
        if name != "reference":
            cost = {n: m["steps_per_event"] for n, m in mons.items()}
            add(
                f"`standard` monitors per event, {name}: training steps, all events (steady:"
                " without the first)",
                "<= 1 step",
                ", ".join(
                    f"{short(n)} {fmt(c, '.2f')} ({fmt(mons[n]['steady_steps_per_event'], '.2f')})"
                    for n, c in cost.items()
                )
                + f"; sink's thread {fmt(std['sink_steps_per_event'], '.2f')} per event"
                + f" ({fmt(std.get('sink_cpu_ms_per_event'), '.1f')} ms CPU)",
                max(c or 0.0 for c in cost.values()) <= 1,
            )
        if model["kind"] == "ratio" and std.get("mb_per_10k_auto") is not None:
            mb, linear = std["mb_per_10k_auto"], std["mb_per_10k_steps"]
            add(
                f"event file, `standard`, {name}, a 10k-step run ({AUTO_10K} events per monitor:"
                " bytes per event x events; this run's event density extrapolated linearly)",
                "<= 25 MB",
                f"{mb:.2f} MB ({linear:.1f} MB linearly)",
                mb <= 25,
            )
    mem = result.get("memory")
    if mem:
        add(
            f"RSS growth over {mem['n_events']} events of each `standard` monitor",
            "<= 10 MB",
            f"{mem['growth_mb']:+.1f} MB ({mem['growth_trimmed_mb']:+.1f} after malloc_trim)",
            mem["growth_mb"] <= 10,
        )
    return rows


def table(header: list[str], rows: list[list[str]]) -> None:
    """Columns fitted to their widest cell; the first left-aligned, the others right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in [header, *rows]:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                 enumerate(zip(line, widths, strict=True))]  # fmt: skip
        print("   " + "  ".join(cells))


RATIO_HEADER = ["configuration", "wall", "min", "max", "CPU", "work%", "sink%", "quiet",
                "MB/10k", "linear", "RSS+MB"]  # fmt: skip
EVENT_HEADER = ["per monitor", "events", "first", "interval", "ms/event", "window", "1st ms",
                "steady", "steps", "steady", "budget"]  # fmt: skip
LEGEND = """\
   wall/CPU: over the neighbouring bare runs (median, min, max); work%/sink%: the monitors' own
   time on the training thread / the sink's thread, over bare; quiet: batches without monitor
   work or hooks over bare's; MB/10k: written beyond bare in a 10k-step run (bytes per event
   x the events of a 10k-step automatic schedule); linear: this run's bytes x 10k / its steps;
   RSS+MB: growth over the run.
   events: per run; first: step of the first event; interval: the final steady interval;
   ms/event: (total + window) / events (window: ActivationMonitor's hooked batches); 1st ms:
   the first event; steady: the others; steps: ms/event and steady over the bare step; budget:
   the monitor's own estimate of steps per event (without the first). The sink's thread row:
   ms/event of all monitors' jobs (wall), and in the 1st-ms column their CPU ms per event."""


def print_table(result: dict) -> None:
    s = result["settings"]
    print(f"\nlightning-cnnviz overhead: torch threads {s['threads']}, {s['reps']} reps, "
          f"{s['device']}, {s['machine']}")  # fmt: skip
    for name, model in result["models"].items():
        print(f"\n== {name}: {model['description']}")
        print(f"   bare: {fmt(median(model['bare_seconds']), '.1f')} s/run, "
              f"{model['bare_step_ms']:.1f} ms/step (median)")  # fmt: skip
        configs = model["configs"].items()
        own = [m["budget_step_ms"] for row in model["configs"].values()
               for m in row.get("monitors", {}).values()]  # fmt: skip
        print(f"   the monitors' own estimate of a step (budget.step_seconds): median "
              f"{fmt(median(own), '.1f')} ms")  # fmt: skip
        if model["kind"] == "ratio":
            keys, shares = (
                ("ratio_median", "ratio_min", "ratio_max", "cpu_ratio_median"),
                ("work_share", "sink_share"),
            )
            table(RATIO_HEADER, [
                ["bare vs bare (noise floor)" if c == "bare" else c]
                + [fmt(row.get(k)) for k in keys]
                + [fmt(100 * row[k] if k in row else None, ".2f") for k in shares]
                + [fmt(row.get("quiet_step_ratio")), fmt(row.get("mb_per_10k_auto"), ".2f"),
                   fmt(row.get("mb_per_10k_steps"), ".1f"),
                   fmt(row.get("rss_growth_mb"), "+.1f")]
                for c, row in configs
            ])  # fmt: skip
        rows = []
        for config, row in configs:
            for mon, m in row.get("monitors", {}).items():
                rows.append([
                    f"{config}: {short(mon)}", "/".join(map(str, m["events_per_run"])),
                    fmt(median(m["first_step"]), ".0f"), fmt(median(m["interval"]), ".0f"),
                    *(fmt(m[k], ".1f") for k in ("ms_per_event", "window_ms_per_event",
                                                  "first_event_ms", "steady_ms_per_event")),
                    *(fmt(m[k], ".2f") for k in ("steps_per_event", "steady_steps_per_event",
                                                  "budget_event_steps")),
                ])  # fmt: skip
            if "sink_ms_per_event" in row:
                rows.append([f"{config}: sink's thread (CPU ms)", "", "", "",
                             fmt(row["sink_ms_per_event"], ".1f"), "",
                             fmt(row.get("sink_cpu_ms_per_event"), ".1f"), "",
                             fmt(row["sink_steps_per_event"], ".2f"), "", ""])  # fmt: skip
        table(EVENT_HEADER, rows)
    print(LEGEND)
    mem = result.get("memory")
    if mem:
        print(f"\nRSS over {mem['n_events']} logging events of each `standard` monitor "
              f"(every_n_steps=1, reference CNN): {mem['rss_start']:.0f} -> {mem['rss_end']:.0f}"
              f" MB, growth {mem['growth_mb']:+.1f} MB (after malloc_trim: "
              f"{mem['growth_trimmed_mb']:+.1f} MB)")  # fmt: skip
    print("\n| figure | target | measured | met |\n|---|---|---|---|")
    for t in result["targets"]:
        print(
            f"| {t['figure']} | {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |"
        )
    for note in result["notes"]:
        print(f"note: {note}")


# ------------------------------------------------------------------- main
def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {MODELS}")
    parser.add_argument("--configs", default="standard", help="presets or monitors, vs bare")
    parser.add_argument("--reps", "--repeats", type=int, default=3, help="monitored runs each")
    parser.add_argument("--threads", type=int, default=1, choices=(1, 2))
    parser.add_argument("--epochs", type=int, default=3, help="reference CNN: epochs")
    parser.add_argument("--train-size", type=int, default=8000, help="reference: train digits")
    parser.add_argument("--val-size", type=int, default=1000, help="reference: val digits")
    parser.add_argument("--mnist", type=Path, default=None, help="dir of the MNIST t10k gz files")
    parser.add_argument("--steps", type=int, default=400, help="resnet18: steps per run")
    parser.add_argument("--cost-steps", type=int, default=40, help="resnet50: steps per run")
    parser.add_argument("--cost-every", type=int, default=10, help="resnet50: steps per event")
    parser.add_argument("--events", type=int, default=500, help="logging events, memory loop")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 rep, short runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:  # written next to the results, git-ignored
        args.reps, args.events, args.train_size, args.val_size = 1, 20, 1280, 256
        args.steps, args.cost_steps, args.cost_every = 60, 10, 5
        args.out = RESULTS.with_name("overhead.quick.tmp") if args.out == RESULTS else args.out
    return args


def setups(args: argparse.Namespace, names: list[str], root: Path) -> dict[str, Setup]:
    made = {}
    for name in names:
        if name == "reference":
            made[name] = reference(args.train_size, args.val_size, args.epochs, args.mnist, root)
        elif name == "resnet18":
            made[name] = resnet("resnet18", args.steps, 32, 32, epoch_steps=min(100, args.steps),
                                val_size=256)  # fmt: skip
        elif name == "resnet50":
            made[name] = resnet("resnet50", args.cost_steps, 16, 64, epoch_steps=args.cost_steps,
                                val_size=128, kind="cost", cost_every=args.cost_every)  # fmt: skip
        else:
            raise SystemExit(f"--models: unknown model {name!r}, choose from {MODELS}")
    return made


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_cnnviz"):
        logging.getLogger(name).setLevel(logging.ERROR)  # run banners, summaries
    configs = [c for c in args.configs.split(",") if c and c != "bare"]
    unknown = [c for c in configs if c not in PRESETS and c not in MONITORS]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}, choose from {[*PRESETS, *MONITORS]}")
    names = [n for n in args.models.split(",") if n]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnviz-overhead-") as tmp:
        root = Path(tmp)
        made = setups(args, [*names, *(["reference"] if "reference" not in names else [])], root)
        ref = made["reference"]
        run(ref, "warmup", root / "warmup", args, max_steps=20, max_epochs=-1)  # lazy imports
        memory = memory_growth(ref, root / "memory", args.events) if args.events > 0 else None
        models = {n: measure(made[n], configs, root / n, args) for n in names}
    notes = [
        "a shared machine (other jobs running): wall ratios within a few % of 1 are not "
        "resolved; the noise floor row and work% are the figures to read beside them",
        "OverfittingMonitor logs at validation ends only (automatic: every validation)",
    ]
    result = {
        "settings": {
            "models": names, "configs": configs, "reps": args.reps,
            "threads": torch.get_num_threads(), "events": args.events, "quick": args.quick,
            "device": "GPU" if torch.cuda.is_available() and args.accelerator != "cpu" else "CPU",
            "machine": machine(), "minutes": (time.perf_counter() - started) / 60,
            "command": " ".join(["python", "benchmarks/overhead.py", *sys.argv[1:]]),
            "torch": torch.__version__, "lightning": L.__version__,
            "python": platform.python_version(),
        },
        "models": models,
        "memory": memory,
        "notes": notes,
    }  # fmt: skip
    result["targets"] = targets(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {os.path.relpath(args.out)} ({result['settings']['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
