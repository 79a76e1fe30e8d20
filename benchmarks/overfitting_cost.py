"""What ``OverfittingMonitor`` costs in wall time, and where that time goes.

Two setups, each trained bare and with ``OverfittingMonitor()`` (default arguments)
side by side in one process, interleaved ``bare, monitor, bare, monitor, ..., bare``
(``--reps`` monitor runs, each compared with the mean of the bare runs right before
and after it, so that drift on a shared machine cancels), ``torch.set_num_threads``
pinned (``--threads``, default 2):

* ``cnn``: the reference ``MNISTClassifier`` on ``SyntheticDigitsDataModule``
  (8,000 training digits, 1,000 validation digits, batch 64), 3 epochs, validation
  every epoch;
* ``resnet18``: torchvision's ``resnet18(weights=None, num_classes=10)`` on random
  3x32x32 images (batch 32), 200 steps, ``val_check_interval=100`` (2 validations).

Reported per setup: the wall-time ratio (``trainer.fit`` from call to return; median,
min, max over the repetitions), the seconds the monitor added against the seconds it
measured itself (``monitor.timings["total"]`` plus the phases outside ``total``),
the seconds spent inside each Lightning hook of the monitor (every hook it implements
is wrapped with a timer, so nothing the monitor does on the training thread escapes),
the sink thread's busy time, the modules the first monitor run imported, the cost of
one evaluation in training steps (the median bare training step,
``on_train_batch_start`` to ``on_train_batch_end``), and how much slower the training
steps themselves ran with the monitor attached: cost outside its hooks. (The one found
so far: a parallel torch op on the sink's thread, such as the ``permute().contiguous()``
of a PNG encode, gives that thread an OpenMP team of its own; from then on every
training step ran about 35% slower at 2 threads on 2 cores, with less CPU time, not
more: the workers wait. Compare the wall and CPU ratios.) ``--profile`` adds a
cProfile of one more monitor run (the top functions by cumulative time under the
monitor's hooks).

The first monitor run is the process's first use of the monitor (first-use imports
and tables land in it); the bare runs before it are warmed up by a short bare fit.

Usage::

    python benchmarks/overfitting_cost.py [--setups cnn,resnet18] [--reps 3]
        [--threads 2] [--profile] [--quick]

Prints a report and writes ``benchmarks/results/overfitting_cost.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import Classifier

from lightning_cnnviz.core.sinks import Sink
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.reference import MNISTClassifier, SyntheticDigitsDataModule

RESULTS = Path(__file__).parent / "results" / "overfitting_cost.json"
HOOKS = sorted(
    {n for n in dir(Callback) if n.startswith("on_")}
    | {"setup", "teardown", "state_dict", "load_state_dict"}
)


class StepTimer(Callback):
    """Durations of training batches (``on_train_batch_start`` to ``on_train_batch_end``)."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *_: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *_: Any) -> None:
        self.steps.append(time.perf_counter() - self._start)


def time_hooks(monitor: OverfittingMonitor) -> dict[str, float]:
    """Wrap every Lightning hook of ``monitor`` (on the instance) with a timer."""
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, hook: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return run

    for name in HOOKS:  # the ones it implements (Callback's own are Lightning's no-ops)
        if getattr(type(monitor), name) is not getattr(Callback, name):
            setattr(monitor, name, timed(name, getattr(monitor, name)))
    return spent


def cpu_seconds() -> float:
    """User + system CPU time of this process, every thread (robust to a shared CPU)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------- setups
def cnn_setup(quick: bool) -> tuple[Callable[[], Any], dict[str, Any]]:
    size = 2000 if quick else 8000
    data = SyntheticDigitsDataModule(train_size=size, val_size=1000, seed=0)
    data.setup("fit")  # rendered once; every run gets the same tensors

    def parts() -> tuple[L.LightningModule, Any]:
        dm = SyntheticDigitsDataModule(train_size=size, val_size=1000, seed=0)
        dm.train_dataset, dm.val_dataset = data.train_dataset, data.val_dataset
        return MNISTClassifier(), dm

    return parts, {"max_epochs": 1 if quick else 3}


def resnet_setup(quick: bool) -> tuple[Callable[[], Any], dict[str, Any]]:
    steps, batch = (40 if quick else 200), 32
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(
        torch.randn(steps * batch, 3, 32, 32, generator=g),
        torch.randint(0, 10, (steps * batch,), generator=g),
    )
    val = TensorDataset(
        torch.randn(512, 3, 32, 32, generator=g), torch.randint(0, 10, (512,), generator=g)
    )

    def parts() -> tuple[L.LightningModule, Any]:
        shuffle = torch.Generator().manual_seed(0)
        loaders = (
            DataLoader(train, batch_size=batch, shuffle=True, generator=shuffle),
            DataLoader(val, batch_size=batch),
        )
        return Classifier("resnet18", optimizer="sgd"), loaders

    return parts, {"max_steps": steps, "val_check_interval": steps // 2}


SETUPS = {"cnn": cnn_setup, "resnet18": resnet_setup}


def fit(parts: Callable[[], Any], trainer_kw: dict[str, Any], monitor: bool) -> dict[str, Any]:
    """One run; returns its wall time and, with the monitor, where the monitor's time went."""
    torch.manual_seed(0)
    model, data = parts()
    steps = StepTimer()
    callbacks: list[Callback] = [steps]
    hooks: dict[str, float] = {}
    mon = None
    if monitor:
        mon = OverfittingMonitor()
        hooks = time_hooks(mon)
        callbacks.insert(0, mon)
    before = set(sys.modules)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            default_root_dir=tmp,
            logger=TensorBoardLogger(tmp, name="tb"),
            callbacks=callbacks,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            accelerator="cpu",
            **trainer_kw,
        )
        start, cpu = time.perf_counter(), cpu_seconds()
        if isinstance(data, tuple):
            trainer.fit(model, *data)
        else:
            trainer.fit(model, datamodule=data)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    out: dict[str, Any] = {
        "wall": wall,
        "cpu": cpu,
        "step": statistics.median(steps.steps),
        "steps": len(steps.steps),
    }
    if mon is not None:
        sink = Sink.of(trainer)
        out.update(
            events=mon.events,
            timings=dict(mon.timings),
            hooks={k: v for k, v in sorted(hooks.items()) if v > 1e-4},
            hooks_total=sum(hooks.values()),
            sink_busy=sink.busy_seconds,
            imported=sorted(
                {m.split(".")[0] for m in set(sys.modules) - before if not m.startswith("_")}
            ),
        )
    return out


def profile(parts: Callable[[], Any], trainer_kw: dict[str, Any], top: int = 25) -> str:
    """cProfile of one monitor run: the top functions under the monitor's hooks."""
    prof = cProfile.Profile()
    prof.enable()
    fit(parts, trainer_kw, monitor=True)
    prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text).sort_stats("cumulative")
    stats.print_stats(r"lightning_cnnviz|PIL|tensorboard", top)
    return text.getvalue()


def measure(name: str, reps: int, quick: bool, with_profile: bool) -> dict[str, Any]:
    parts, trainer_kw = SETUPS[name](quick)
    warm = {**trainer_kw, "max_steps": 5, "limit_val_batches": 2}
    warm.pop("val_check_interval", None)
    fit(parts, {k: v for k, v in warm.items() if k != "max_epochs"}, monitor=False)
    bare: list[dict[str, Any]] = [fit(parts, trainer_kw, monitor=False)]
    runs: list[dict[str, Any]] = []
    for _ in range(reps):
        runs.append(fit(parts, trainer_kw, monitor=True))
        bare.append(fit(parts, trainer_kw, monitor=False))

    def neighbours(key: str, i: int) -> float:  # the bare runs right before and after run i
        return (bare[i][key] + bare[i + 1][key]) / 2

    ratios = [run["wall"] / neighbours("wall", i) for i, run in enumerate(runs)]
    cpu_ratios = [run["cpu"] / neighbours("cpu", i) for i, run in enumerate(runs)]
    step = statistics.median(b["step"] for b in bare)
    result = {
        "setup": name,
        "trainer": trainer_kw,
        "bare_wall": [b["wall"] for b in bare],
        "bare_cpu": [b["cpu"] for b in bare],
        "bare_step_s": step,
        "ratio": _spread(ratios),
        "cpu_ratio": _spread(cpu_ratios),
        "added_s": [run["wall"] - neighbours("wall", i) for i, run in enumerate(runs)],
        "added_cpu_s": [run["cpu"] - neighbours("cpu", i) for i, run in enumerate(runs)],
        "step_ratio": [run["step"] / neighbours("step", i) for i, run in enumerate(runs)],
        "runs": runs,
    }
    if with_profile:
        result["profile"] = profile(parts, trainer_kw)
    return result


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _ratio(name: str, r: dict[str, float]) -> str:
    return f"{name} ratio: median {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})"


def report(r: dict[str, Any]) -> str:
    step = r["bare_step_s"]
    lines = [
        f"== {r['setup']} ({r['trainer']}) ==",
        "bare fit wall s: " + ", ".join(f"{w:.2f}" for w in r["bare_wall"]),
        "bare fit CPU s: " + ", ".join(f"{w:.2f}" for w in r["bare_cpu"]),
        f"median bare training step: {step * 1e3:.1f} ms",
        "with OverfittingMonitor: " + _ratio("wall", r["ratio"]),
        "                         " + _ratio("CPU", r["cpu_ratio"]),
    ]
    for i, run in enumerate(r["runs"]):
        t = run["timings"]
        own = t.get("total", 0.0) + sum(v for k, v in t.items() if k in _OUTSIDE_TOTAL)
        events = max(run["events"], 1)
        added, added_cpu = r["added_s"][i], r["added_cpu_s"][i]
        slowed = (r["step_ratio"][i] - 1) * step * run["steps"]
        lines += [
            f"-- monitor run {i + 1}{' (first use in the process)' if i == 0 else ''}: "
            f"wall {run['wall']:.2f} s (added {added:+.2f} s), CPU added {added_cpu:+.2f} s, "
            f"{run['events']} evaluations",
            f"   training steps (the monitor's hooks left out): median {r['step_ratio'][i]:.3f} x "
            f"bare's, {slowed:+.2f} s over {run['steps']} steps",
            f"   own timings {own:.3f} s: "
            + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in sorted(t.items())),
            f"   in its hooks {run['hooks_total']:.3f} s: "
            + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in run["hooks"].items()),
            f"   not in its timings: {run['hooks_total'] - own:+.3f} s; "
            f"sink thread busy {run['sink_busy'] * 1e3:.0f} ms",
            f"   per evaluation: {t.get('total', 0.0) / events * 1e3:.0f} ms = "
            f"{t.get('total', 0.0) / events / step:.1f} training steps (own 'total'); "
            f"wall added per evaluation {added / events / step:.1f} steps, "
            f"CPU {added_cpu / events / step:.1f}",
        ]
        if run["imported"]:
            lines.append("   first imported here: " + ", ".join(run["imported"]))
    if "profile" in r:
        lines += ["-- cProfile of one more monitor run (filtered)", r["profile"]]
    return "\n".join(lines)


# Phases the monitor times outside its evaluations' "total".
_OUTSIDE_TOTAL = ("setup", "schedule", "summary", "flush")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", default="cnn,resnet18")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    results = []
    for name in args.setups.split(","):
        result = measure(name, args.reps, args.quick, args.profile)
        print(report(result), flush=True)
        results.append(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"threads": torch.get_num_threads(), "torch": torch.__version__, "quick": args.quick}
    RESULTS.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
