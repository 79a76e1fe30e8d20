"""KernelMonitor's cost per logging event on torchvision ResNets, next to a training step.

Two measurements, in one process, with ``--threads`` intra-op threads (default 2):

1. The figures of one event over every conv of ``resnet18`` and ``resnet50``
   (``weights=None``): ``hf_energy`` as the zero-padded FFT it was
   (``_hf_energy_fft``, kept in the tests as the reference) and as the quadratic
   form of the taps it is now, plus ``relative_change`` and ``mean_abs``.
2. The whole ``KernelMonitor.log_event`` (default arguments, TensorBoard logger)
   against one training step of ``resnet50`` (batch ``--batch`` of
   ``3 x --size x --size``, SGD, CPU), interleaved: step, event, step, ... so that
   the ratio is measured side by side. Reported: the training thread's part of the
   event (what stalls training), and the drawing and PNG encoding it hands to the
   sink's thread (``Sink.busy_seconds``), which runs while training goes on; also
   the event with the FFT ``hf_energy`` swapped back in. Once at the defaults
   (``max_drawn_layers=16`` of resnet50's 53 convs drawn), once drawing all 53.

Medians over ``--repeats`` (the FFT event: half as many); wall seconds (the machine may
be shared, so each event is compared with a step measured right before it).

Usage::

    python benchmarks/kernel_cost.py [--threads 2] [--repeats 5] [--batch 16] [--size 64]

Prints a table and writes ``benchmarks/results/kernel_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torchvision
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from lightning_cnnviz.kernels import figures  # noqa: E402
from lightning_cnnviz.kernels.callback import KernelMonitor  # noqa: E402
from tests.kernels.test_hf_energy import _hf_energy_fft  # noqa: E402


def seconds(job: Callable[[], object]) -> float:
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


def median_seconds(job: Callable[[], object], repeats: int) -> float:
    job()  # warm-up: caches, allocator, lazy kernels
    return statistics.median(seconds(job) for _ in range(repeats))


def figures_cost(arch: str, repeats: int) -> dict[str, float]:
    """Seconds per event for the figures over every conv of ``arch``."""
    model = getattr(torchvision.models, arch)(weights=None)
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, nn.Conv2d)]
    previous = [w.clone() * 0.99 for w in weights]
    fft = median_seconds(lambda: [_hf_energy_fft(w) for w in weights], repeats)
    quad = median_seconds(lambda: [figures.hf_energy(w) for w in weights], repeats)
    rest = median_seconds(
        lambda: [
            (figures.relative_change(w, p), figures.mean_abs(w))
            for w, p in zip(weights, previous, strict=True)
        ],
        repeats,
    )
    return {
        "convs": len(weights),
        "slices": sum(w.shape[0] * w.shape[1] for w in weights if w.shape[2:] != (1, 1)),
        "hf_fft_s": fft,
        "hf_quadratic_s": quad,
        "change_and_mean_abs_s": rest,
        "figures_before_s": fft + rest,
        "figures_after_s": quad + rest,
    }


class ResNet50(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torchvision.models.resnet50(weights=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def event_vs_step(repeats: int, batch: int, size: int, **options: object) -> dict[str, object]:
    """Seconds of a resnet50 training step and of KernelMonitor's event, interleaved."""
    model = ResNet50()
    trainer = L.Trainer(
        logger=TensorBoardLogger(tempfile.mkdtemp(), name="kernel_cost"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    monitor = KernelMonitor(**options)
    monitor.setup(trainer, model, "fit")
    sink = monitor.sink
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = torch.randint(0, 1000, (batch,), generator=g)

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    def event() -> None:
        monitor.log_event(trainer, model)

    def event_with_fft() -> None:
        quadratic, figures.hf_energy = figures.hf_energy, _hf_energy_fft
        try:
            event()
        finally:
            figures.hf_energy = quadratic

    step(), event(), sink.wait()  # warm-up: the form cache, the sink's thread
    rows: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        step()  # settles the allocator after the previous round
        rows["step"].append(seconds(step))
        busy, before = sink.busy_seconds, dict(monitor.timings)
        rows["event"].append(seconds(event))
        for phase, total in monitor.timings.items():
            rows[f"phase_{phase}"].append(total - before.get(phase, 0.0))
        rows["step_while_drawing"].append(seconds(step))
        sink.wait()
        rows["sink"].append(sink.busy_seconds - busy)
    for _ in range(max(1, repeats // 2)):  # the event as it was, with its own steps
        step()
        rows["step_fft"].append(seconds(step))
        rows["event_fft"].append(seconds(event_with_fft))
        sink.wait()
    result: dict[str, object] = {f"{k}_s": statistics.median(v) for k, v in rows.items()}
    for name, steps in (("event", "step"), ("event_fft", "step_fft"), ("sink", "step")):
        result[f"{name}_over_step"] = statistics.median(
            e / s for e, s in zip(rows[name], rows[steps], strict=True)
        )
    result["images_per_event"] = len(monitor._drawn)
    result["layers"] = len(monitor.selected)
    return result


def report_event(label: str, e: dict) -> None:
    phases = ", ".join(
        f"{k[6:-2]} {v * 1e3:.0f}"
        for k, v in e.items()
        if k.startswith("phase_") and k != "phase_total_s"
    )
    print(
        f"  {label}: training thread {e['event_s'] * 1e3:.0f} ms = {e['event_over_step']:.3f} "
        f"steps ({phases} ms); with the FFT hf_energy {e['event_fft_s'] * 1e3:.0f} ms = "
        f"{e['event_fft_over_step']:.2f} steps\n"
        f"    sink's thread (drawing + PNG, {e['images_per_event']} of {e['layers']} layers): "
        f"{e['sink_s'] * 1e3:.0f} ms = {e['sink_over_step']:.2f} steps, while training goes on "
        f"(a step meanwhile: {e['step_while_drawing_s'] * 1e3:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", default=str(RESULTS / "kernel_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, object] = {"threads": args.threads, "repeats": args.repeats}
    print(f"intra-op threads: {args.threads}; medians over {args.repeats} repeats")
    print(f"{'model':<9} {'convs':>5} {'hf FFT':>9} {'hf quad':>9} {'speedup':>8} "
          f"{'change+abs':>10} {'figures before':>14} {'after':>9}")  # fmt: skip
    for arch in ("resnet18", "resnet50"):
        r = figures_cost(arch, args.repeats)
        result[arch] = r
        print(
            f"{arch:<9} {r['convs']:>5} {r['hf_fft_s'] * 1e3:>7.0f}ms "
            f"{r['hf_quadratic_s'] * 1e3:>7.1f}ms {r['hf_fft_s'] / r['hf_quadratic_s']:>7.0f}x "
            f"{r['change_and_mean_abs_s'] * 1e3:>8.1f}ms {r['figures_before_s'] * 1e3:>12.0f}ms "
            f"{r['figures_after_s'] * 1e3:>7.1f}ms"
        )
    print(f"\nresnet50, batch {args.batch} x 3x{args.size}x{args.size}, SGD, CPU:")
    for label, options in [
        ("KernelMonitor()", {}),
        ("KernelMonitor(max_drawn_layers=None)", {"max_drawn_layers": None}),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = event_vs_step(args.repeats, args.batch, args.size, **options)
        result[f"resnet50 {label}"] = e
        print(f"  step {e['step_s'] * 1e3:.0f} ms")
        report_event(label, e)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
