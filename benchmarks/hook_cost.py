"""What a monitor costs on the steps between its logs: wandb.watch's hooks vs ours.

``wandb.watch(model, log="all")`` keeps a forward hook on the model and a gradient
hook on every parameter for the whole run; each checks a counter on every step and
does its work every ``log_freq`` calls. lightning-cnnviz attaches no hook between
logging steps (``tests/test_no_work_between_logs.py``), so its cost there is zero by
construction. This script measures wandb's per-step cost where it is resolvable:
training steps of the reference CNN at batch 1 (about 0.4 ms each), in alternating
blocks with and without ``wandb.watch(..., log_freq=10**9)`` (hooks on, never a log).
The figure in microseconds carries over to any batch size; the overhead benchmark adds
it to wandb's logging work for the side-by-side comparison with ActivationMonitor.

Usage::

    pip install -e ".[dev,bench]"
    python benchmarks/hook_cost.py [--blocks 30] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from lightning_cnnviz.reference import MNISTClassifier

RESULTS = Path(__file__).parent / "results"


def median_step_seconds(step: Callable[[], None], steps: int) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(blocks: int, steps: int) -> dict[str, float]:
    """Median step time bare vs with wandb.watch's hooks, in alternating blocks."""
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    torch.manual_seed(0)
    model = MNISTClassifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(1, 1, 28, 28), torch.randint(0, 10, (1,))

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    run = wandb.init(project="cnnviz-hook-cost", dir=tempfile.mkdtemp(), mode="offline")
    median_step_seconds(step, steps)  # warm-up
    bare, hooked = [], []
    for _ in range(blocks):
        bare.append(median_step_seconds(step, steps))
        wandb.watch(model, log="all", log_freq=10**9)
        hooked.append(median_step_seconds(step, steps))
        wandb.unwatch(model)
    run.finish()
    b, h = statistics.median(bare), statistics.median(hooked)
    return {
        "bare_step_us": 1e6 * b,
        "wandb_hooks_step_us": 1e6 * h,
        "extra_us_per_step": 1e6 * (h - b),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--steps", type=int, default=200, help="steps per block")
    parser.add_argument("--out", default=str(RESULTS / "hook_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = measure(args.blocks, args.steps)
    result |= {"blocks": args.blocks, "steps_per_block": args.steps, "batch": 1}
    print(
        f"reference CNN, batch 1: bare step {result['bare_step_us']:.0f} us, with "
        f"wandb.watch hooks {result['wandb_hooks_step_us']:.0f} us: "
        f"{result['extra_us_per_step']:+.1f} us per step between logs "
        "(lightning-cnnviz: no hooks there)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
