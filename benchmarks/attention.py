"""Does a tiny ViT's Grad-CAM and attention rollout land on the object that decides the class?

A synthetic task: 32x32 RGB noise with a grey distractor square and one coloured
6x6 square at a random position; its colour (red, green, blue, yellow) is the class,
so nothing but the object tells the class. A tiny timm ViT (patch 4, an 8x8 grid,
class token) trains for ``--steps`` steps on one thread with ``AttentionMonitor``
attached (alone, so that the sink's drawing time is its own). Reported, on held-out images:

* the share of Grad-CAM's mass (``layers="auto"``: the last block's ``norm1``, true
  class) and of attention rollout's mass (upsampled as drawn) inside the object,
  against the object's share of the image's area;
* the per-event cost of the attention view in training steps, side by side in the
  same run: the median time of a training step without an event vs the view's time
  per event (its ``timings["total"]`` plus its drawing on the sink's thread).

Usage::

    python benchmarks/attention.py [--steps 300] [--every 50] [--figures docs/images]

Prints a table and writes ``benchmarks/results/attention.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import timm
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz import AttentionMonitor
from lightning_cnnviz.attention.draw import upsample
from lightning_cnnviz.attention.maps import attention_maps, attention_sites
from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.target_layer import auto_cam_layer
from lightning_cnnviz.core.token_cam import any_grad_cam

RESULTS = Path(__file__).resolve().parent / "results" / "attention.json"
COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0], [1.0, 1.0, 0.1]])


def object_task(n: int, seed: int, side: int = 32, size: int = 6) -> tuple[Tensor, Tensor, Tensor]:
    """``(images, labels, object masks)``: the class is the colour of a small square."""
    g = torch.Generator().manual_seed(seed)
    x = (0.35 + 0.1 * torch.randn(n, 3, side, side, generator=g)).clamp(0, 1)
    y = torch.arange(n) % len(COLOURS)
    mask = torch.zeros(n, side, side, dtype=torch.bool)
    corners = torch.randint(0, side - size + 1, (n, 4), generator=g)
    for i in range(n):
        r, c, dr, dc = corners[i].tolist()
        while abs(dr - r) < size and abs(dc - c) < size:  # the distractor never overlaps
            dr, dc = torch.randint(0, side - size + 1, (2,), generator=g).tolist()
        x[i, :, dr : dr + size, dc : dc + size] = 0.8  # grey: no class information
        x[i, :, r : r + size, c : c + size] = COLOURS[y[i]].view(3, 1, 1)
        mask[i, r : r + size, c : c + size] = True
    return x, y, mask


def tiny_vit() -> nn.Module:
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=3,
                             embed_dim=48, num_heads=3, num_classes=len(COLOURS))  # fmt: skip


class Classifier(L.LightningModule):
    def __init__(self, net: nn.Module, lr: float = 2e-3) -> None:
        super().__init__()
        self.net, self.lr = net, lr

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", (self(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


class StepTimes(Callback):
    """Wall time of each training step (batch start to batch end, before the monitors run)."""

    def __init__(self) -> None:
        self.times: list[tuple[int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append((trainer.global_step, time.perf_counter() - self._start))


def train(steps: int, every: int, root: str, n_train: int = 2048, seed: int = 0):
    """Fit the tiny ViT with both views; returns (model, attention monitor, step times)."""
    L.seed_everything(seed, verbose=False)
    x, y, _ = object_task(n_train, seed=1)
    xv, yv, _ = object_task(64, seed=2)
    train_dl = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    val_dl = DataLoader(TensorDataset(xv, yv), batch_size=64)
    attention = AttentionMonitor(every_n_steps=every, num_samples=8)
    timer = StepTimes()
    monitors = [timer, attention]  # alone on the sink: its busy time is the view's drawing
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=TensorBoardLogger(root, name="tb"),
                        callbacks=monitors, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=1,
                        val_check_interval=min(steps, n_train // 32),
                        default_root_dir=root)  # fmt: skip
    model = Classifier(tiny_vit())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, train_dl, val_dl)
    return model, attention, timer.times, trainer


def shares(model: nn.Module, n: int = 128, seed: int = 3) -> dict[str, float]:
    """Grad-CAM's and rollout's mass on the object vs its area, and accuracy, on held-out images."""
    net = model.net if hasattr(model, "net") else model
    x, y, mask = object_task(n, seed=seed)
    layers = named_layers(net)
    name, _ = auto_cam_layer(net, layers, x)
    cam, logits = any_grad_cam(net, layers[name], x, y)
    sites = attention_sites(layers, [n for n in layers if n.endswith("attn")][-1:])
    _, rolled = attention_maps(net, x, sites)
    roll = upsample(rolled[:, None], tuple(x.shape[-2:]))[:, 0]

    def on(m: Tensor) -> Tensor:
        m = m.clamp_min(0).flatten(1)
        return (m * mask.flatten(1)).sum(1) / m.sum(1).clamp_min(1e-30)

    area = mask.flatten(1).float().mean(1)
    cam_on, roll_on = on(cam), on(roll)
    return {
        "cam_layer": name,
        "accuracy": float((logits.argmax(1) == y).float().mean()),
        "area_share": float(area.mean()),
        "gradcam_on_object": float(cam_on.mean()),
        "rollout_on_object": float(roll_on.mean()),
        "gradcam_above_area": float((cam_on > area).float().mean()),
        "gradcam_blank": float((cam.flatten(1).amax(1) <= 0).float().mean()),
        "rollout_above_area": float((roll_on > area).float().mean()),
    }


def event_cost(monitor: AttentionMonitor, times: list[tuple[int, float]]) -> dict[str, float]:
    """Median plain step vs the view's time per event: on the training thread, and drawing."""
    every = monitor.every_n_steps or 1
    step_s = statistics.median(t for step, t in times if step % every != 0)
    events = max(1, monitor.events)
    event_s = monitor.timings["total"] / events  # what training waits for
    drawing_s = (monitor.sink.busy_seconds if monitor._sink is not None else 0.0) / events
    return {"step_s": step_s, "event_s": event_s, "event_in_steps": event_s / step_s,
            "drawing_s": drawing_s, "drawing_in_steps": drawing_s / step_s,
            "events": monitor.events}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--figures", type=Path, default=None, help="save the last grids as PNGs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        model, monitor, times, _ = train(args.steps, args.every, root)
        fit_s = time.perf_counter() - start
        result = {
            "steps": args.steps,
            "fit_s": fit_s,
            **shares(model),
            **event_cost(monitor, times),
        }
        if args.figures is not None:
            save_figures(root, args.figures)
            save_gradcam(model, args.figures / "attention_gradcam.png")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    width = max(map(len, result))
    for key, value in result.items():
        print(
            f"{key:<{width}}  {value:.4f}"
            if isinstance(value, float)
            else f"{key:<{width}}  {value}"
        )


def save_figures(root: str, folder: Path) -> None:
    """The last attention, rollout and Grad-CAM grids written to TensorBoard, as PNGs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_cnnviz.core.logs import event_folder

    acc = EventAccumulator(str(event_folder(root)), size_guidance={"images": 0})
    acc.Reload()
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {"attention/rollout": "attention_rollout.png"}
    heads = [t for t in acc.Tags()["images"] if t.startswith("attention/") and t.endswith(".attn")]
    wanted |= {heads[-1]: "attention_heads.png"} if heads else {}
    for tag, name in wanted.items():
        (folder / name).write_bytes(acc.Images(tag)[-1].encoded_image_string)
        print("wrote", folder / name, file=sys.stderr)


def save_gradcam(model: nn.Module, path: Path, n: int = 8) -> None:
    """Grad-CAM (``auto`` layer, predicted class) of held-out images, drawn as the view draws it."""
    from torchvision.io import write_png

    from lightning_cnnviz.core.rendering import to_uint8
    from lightning_cnnviz.gradcam.draw import cam_grid

    net = model.net
    x, y, _ = object_task(n, seed=3)
    layers = named_layers(net)
    name, _ = auto_cam_layer(net, layers, x)
    cam, logits = any_grad_cam(net, layers[name], x)
    grid, _ = cam_grid(x, cam, logits, y)
    write_png(to_uint8(grid.float() / 255) if grid.dtype != torch.uint8 else grid, str(path))
    print("wrote", path, file=sys.stderr)


if __name__ == "__main__":
    main()
