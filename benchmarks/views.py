"""Cost per event of the issue-10 views: embeddings, activation maximisation, adversarial, saliency.

On the reference CNN (``MNISTClassifier``) trained on the shared real MNIST digits
(synthetic digits where those are missing), two fits of ``--steps`` optimizer
steps from the same seed run side by side: one bare, one with the Embedding,
ActivationMaximization and Adversarial monitors at their default arguments, the
KernelMonitor with dense-layer weights, and GradCAMMonitor with CAM rows only,
with saliency rows, and with SmoothGrad-ed saliency rows (the differences between
the last three are the saliency options' cost), logging every ``--every`` steps. Reported, measured
in the same run: the bare time per training step, each monitor's milliseconds per
event (its ``timings["total"] / events``, phases too) and that cost in training
steps, and the overhead of the whole fit.

With ``--pictures DIR`` it also writes the figures of the docs from the
monitored run's event files: ``embeddings.png`` (a PCA of the last embedding,
coloured by label), ``activation_maximization.png`` and ``adversarial.png``.

Usage::

    python benchmarks/views.py [--steps 150] [--every 50] [--pictures docs/images]

Prints a table and writes ``benchmarks/results/views.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import mnist_root

from lightning_cnnviz.activation_maximization.callback import ActivationMaximizationMonitor
from lightning_cnnviz.adversarial.callback import AdversarialMonitor
from lightning_cnnviz.core import rendering
from lightning_cnnviz.core.labels import caption
from lightning_cnnviz.embeddings.callback import EmbeddingMonitor
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from lightning_cnnviz.kernels.callback import KernelMonitor
from lightning_cnnviz.reference import MNISTClassifier, MNISTDataModule, SyntheticDigitsDataModule

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
RESULTS = Path(__file__).resolve().parent / "results" / "views.json"
PALETTE = torch.tensor(
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
     [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
    dtype=torch.uint8,
)  # fmt: skip


def data_module(root: Path) -> L.LightningDataModule:
    """Real MNIST (the shared 10k digits, 8k train / 2k val) or synthetic digits."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        return SyntheticDigitsDataModule(train_size=4000, val_size=1000, batch_size=64)
    mnist_root(SHARED_MNIST, root)
    return MNISTDataModule(root=str(root), val_size=2000, batch_size=64, download=False)


def fit(root: Path, steps: int, callbacks=()) -> float:
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        default_root_dir=root, max_steps=steps, max_epochs=-1, limit_val_batches=4,
        val_check_interval=steps, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
        logger=TensorBoardLogger(root, name="tb"), callbacks=list(callbacks),
    )  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(MNISTClassifier(), datamodule=data_module(root))
    return time.perf_counter() - start


def pca_scatter(tensors: np.ndarray, labels: list[int], size: int = 320) -> torch.Tensor:
    """The first two principal components as a scatter of label-coloured 3x3 dots (uint8)."""
    x = torch.from_numpy(tensors).float()
    x = x - x.mean(0)
    _, _, v = torch.pca_lowrank(x, q=2, center=False)
    xy = x @ v[:, :2]
    xy = (xy - xy.amin(0)) / (xy.amax(0) - xy.amin(0)).clamp_min(1e-12)
    pix = (xy * (size - 9) + 4).round().long()
    canvas = torch.full((3, size, size), 255, dtype=torch.uint8)
    for (px, py), label in zip(pix.tolist(), labels, strict=True):
        canvas[:, size - py - 2 : size - py + 1, px - 1 : px + 2] = PALETTE[label][:, None, None]
    legend = rendering.hstack(
        [caption(torch.zeros(3, 4, 14, dtype=torch.uint8) + PALETTE[k][:, None, None],
                           str(k), color=tuple(PALETTE[k].tolist())) for k in range(10)],
        gap=4,
    )  # fmt: skip
    return rendering.vstack([legend, canvas], gap=4)


def pictures(log_dir: Path, out: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out.mkdir(parents=True, exist_ok=True)
    from lightning_cnnviz.core.logs import event_folder

    acc = EventAccumulator(str(event_folder(log_dir)), size_guidance={"images": 0})
    acc.Reload()
    for tag, name in (
        ("activation_maximization/classes", "activation_maximization_classes.png"),
        ("activation_maximization/conv2", "activation_maximization.png"),
        ("adversarial/examples", "adversarial.png"),
    ):
        png = acc.Images(tag)[-1].encoded_image_string
        Image.open(io.BytesIO(png)).save(out / name, optimize=True)
    step_dir = sorted(d for d in log_dir.rglob("tensors.tsv"))[-1].parent
    tensors = np.loadtxt(step_dir / "tensors.tsv", delimiter="\t")
    rows = (step_dir / "metadata.tsv").read_text().splitlines()[1:]
    image = pca_scatter(tensors, [int(r.split("\t")[0]) for r in rows])
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(out / "embeddings.png", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--pictures", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare = fit(root / "bare", args.steps)
        monitors = {
            "EmbeddingMonitor": EmbeddingMonitor(every_n_steps=args.every),
            "ActivationMaximizationMonitor": ActivationMaximizationMonitor(
                every_n_steps=args.every
            ),
            "AdversarialMonitor": AdversarialMonitor(every_n_steps=args.every),
            "KernelMonitor(linear=True)": KernelMonitor(every_n_steps=args.every, linear=True),
            "GradCAMMonitor (CAM rows only)": GradCAMMonitor(
                every_n_steps=args.every, misclassified=False, tag_prefix="cam/"
            ),
            "GradCAMMonitor + saliency rows": GradCAMMonitor(
                every_n_steps=args.every,
                misclassified=False,
                saliency=["saliency", "integrated_gradients"],
                tag_prefix="saliency/",
            ),
            "GradCAMMonitor + saliency rows, SmoothGrad": GradCAMMonitor(
                every_n_steps=args.every,
                misclassified=False,
                saliency=["saliency", "integrated_gradients"],
                smooth=True,
                tag_prefix="smoothgrad/",
            ),
        }
        watched = fit(root / "watched", args.steps, monitors.values())
        if args.pictures is not None:
            pictures(root / "watched", args.pictures)
    step_ms = 1000 * bare / args.steps
    rows = {}
    for name, monitor in monitors.items():
        per_event = {k: 1000 * v / max(monitor.events, 1) for k, v in monitor.timings.items()}
        rows[name] = {"events": monitor.events, "ms_per_event": per_event}
    result = {
        "steps": args.steps, "every": args.every, "bare_s": bare, "watched_s": watched,
        "bare_ms_per_step": step_ms, "overhead": watched / bare - 1, "monitors": rows,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"bare training: {step_ms:.1f} ms/step; fit overhead {100 * result['overhead']:.0f}%")
    print(f"{'monitor':44s} {'events':>6s} {'ms/event':>9s} {'steps':>6s}  phases (ms)")
    for name, row in rows.items():
        ms = row["ms_per_event"]
        phases = ", ".join(f"{k} {v:.0f}" for k, v in ms.items() if k != "total")
        total = ms.get("total", 0.0)
        print(f"{name:44s} {row['events']:6d} {total:9.0f} {total / step_ms:6.1f}  {phases}")


if __name__ == "__main__":
    main()
