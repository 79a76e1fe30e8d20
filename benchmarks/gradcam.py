"""Grad-CAM: our Captum path vs the independent ``pytorch_grad_cam`` package, side by side.

On the reference CNN (``MNISTClassifier``) trained briefly on the shared real MNIST
digits (synthetic digits where those are missing), for one batch of validation
images, both implementations explain the predicted class at ``pool2`` (the layer
``GradCAMMonitor(layers="auto")`` picks). Reported, measured in the same run:

* time per image of each (median of ``--repeats`` runs) and their ratio;
* per-image Pearson correlation of the two maps after the same per-image min-max
  normalisation (min, mean);
* the training-time overhead of the whole monitor: a fit with vs without
  ``GradCAMMonitor(every_n_steps=...)``, and the monitor's own phase timings.

Usage::

    python benchmarks/gradcam.py [--steps 200] [--batch 256] [--repeats 5] [--device cpu]

Prints a table and writes ``benchmarks/results/gradcam.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import mnist_root

from lightning_cnnviz.core import rendering
from lightning_cnnviz.core.cam import grad_cam
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from lightning_cnnviz.gradcam.metrics import drift
from lightning_cnnviz.reference import MNISTClassifier, MNISTDataModule, SyntheticDigitsDataModule

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
RESULTS = Path(__file__).resolve().parent / "results" / "gradcam.json"


def data_module(root: Path, batch_size: int) -> L.LightningDataModule:
    """Real MNIST (the shared 10k digits, 8k train / 2k val) or synthetic digits."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        return SyntheticDigitsDataModule(train_size=4000, val_size=1000, batch_size=batch_size)
    mnist_root(SHARED_MNIST, root)
    return MNISTDataModule(root=str(root), val_size=2000, batch_size=batch_size, download=False)


def fit(model, data, root: Path, steps: int, callbacks=(), device="cpu") -> float:
    """Seconds for ``steps`` training steps (no validation, no checkpoints)."""
    trainer = L.Trainer(
        default_root_dir=root,
        accelerator=device,
        max_steps=steps,
        limit_val_batches=0,
        logger=TensorBoardLogger(root, name="tb"),
        callbacks=list(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    return time.perf_counter() - start


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps before timing")
    parser.add_argument("--batch", type=int, default=256, help="images explained at once")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=50, help="monitor's every_n_steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    root = Path(tempfile.mkdtemp(prefix="cnnviz-gradcam-bench-"))
    L.seed_everything(0, verbose=False)
    data = data_module(root / "data", 64)
    model = MNISTClassifier()
    fit(model, data, root / "train", args.steps, device=args.device)
    model = model.to(args.device)
    x = torch.stack([data.val_dataset[i][0] for i in range(args.batch)]).to(args.device)

    ours, logits = grad_cam(model, model.pool2, x)
    reference = copy.deepcopy(model)  # pytorch_grad_cam calls eval() and backward() on it
    targets = [ClassifierOutputTarget(int(c)) for c in logits.argmax(1)]
    cam = GradCAM(model=reference, target_layers=[reference.pool2])
    theirs = torch.from_numpy(cam(input_tensor=x, targets=targets)).to(ours.device)
    live = (ours.flatten(1).amax(1) > 0) & (theirs.flatten(1).amax(1) > 0)
    corr = 1 - drift(rendering.normalize(ours[live]), rendering.normalize(theirs[live]))

    t_ours = timed(lambda: grad_cam(model, model.pool2, x), args.repeats, args.device)
    t_theirs = timed(lambda: cam(input_tensor=x, targets=targets), args.repeats, args.device)
    cam.__exit__(None, None, None)

    # The whole monitor in training: a fit with vs without it, same seed and steps.
    L.seed_everything(0, verbose=False)
    bare = fit(MNISTClassifier(), data, root / "bare", args.steps, device=args.device)
    L.seed_everything(0, verbose=False)
    monitor = GradCAMMonitor(every_n_steps=args.every)
    with_monitor = fit(MNISTClassifier(), data, root / "mon", args.steps, [monitor], args.device)

    n = len(x)
    result = {
        "device": args.device,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "data": type(data).__name__,
        "train_steps": args.steps,
        "batch": n,
        "layer": "pool2",
        "ms_per_image_ours": 1000 * t_ours / n,
        "ms_per_image_pytorch_grad_cam": 1000 * t_theirs / n,
        "ratio_ours_over_pytorch_grad_cam": t_ours / t_theirs,
        "images_compared": int(live.sum()),
        "all_zero_cams": int((~live).sum()),
        "correlation_min": float(corr.min()),
        "correlation_mean": float(corr.mean()),
        "fit_seconds_without_monitor": bare,
        "fit_seconds_with_monitor": with_monitor,
        "fit_ratio_with_over_without": with_monitor / bare,
        "monitor_every_n_steps": args.every,
        "monitor_events": monitor.events,
        "monitor_ms_per_event": {
            k: 1000 * v / max(1, monitor.events) for k, v in monitor.timings.items()
        },
    }
    rows = [
        ("Grad-CAM ms / image (ours, Captum)", f"{result['ms_per_image_ours']:.3f}"),
        (
            "Grad-CAM ms / image (pytorch_grad_cam)",
            f"{result['ms_per_image_pytorch_grad_cam']:.3f}",
        ),
        ("ratio ours / pytorch_grad_cam", f"{result['ratio_ours_over_pytorch_grad_cam']:.2f}"),
        ("per-image correlation min / mean", f"{corr.min():.6f} / {corr.mean():.6f}"),
        ("images compared (all-zero CAMs left out)", f"{int(live.sum())} ({int((~live).sum())})"),
        (f"fit {args.steps} steps without / with monitor (s)", f"{bare:.1f} / {with_monitor:.1f}"),
        ("fit ratio with / without", f"{result['fit_ratio_with_over_without']:.3f}"),
        ("monitor ms per event (total)", f"{result['monitor_ms_per_event'].get('total', 0):.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"Grad-CAM benchmark on {args.device}, {type(data).__name__}, batch {n}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
