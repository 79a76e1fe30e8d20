"""The pictures of ``docs/scenarios.md``, read back from the event files of real runs.

Usage::

    python docs/scenario_images.py KIND RUN_DIR OUT.png

``KIND``: ``curves`` (train vs val loss and accuracy per epoch, with the overfitting
onset and best epoch marked when the run found one), ``dead`` (the
``activations/relu{1,2,3}/dead_strip`` strips side by side, first 32 units) or ``gradcam``
(``gradcam/train`` above ``gradcam/val``, from the last log).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_cnnviz.activations.draw import strip_layout
from lightning_cnnviz.core.logs import event_folder


def _acc(run: str) -> EventAccumulator:
    acc = EventAccumulator(str(event_folder(run)), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def _image(acc: EventAccumulator, tag: str, label: str) -> Image.Image:
    image = Image.open(io.BytesIO(acc.Images(tag)[-1].encoded_image_string)).convert("RGB")
    out = Image.new("RGB", (image.width, image.height + 16))
    out.paste(image, (0, 16))
    ImageDraw.Draw(out).text((4, 2), label, fill=(255, 255, 255))
    return out


def _stack(images: list[Image.Image]) -> Image.Image:
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height + 6 for i in images)))
    y = 0
    for image in images:
        out.paste(image, (0, y))
        y += image.height + 6
    return out


def dead(acc: EventAccumulator, rows: int = 32) -> Image.Image:
    """``activations/relu{1,2,3}/dead_strip`` side by side (the first ``rows`` units each).

    Each strip keeps its own title and unit ticks; the legend and the log axis are
    drawn once, below, from the first strip.
    """
    panels, footer = [], None
    for layer, units in (("relu1", 16), ("relu2", 32), ("relu3", 128)):
        tag = f"activations/{layer}/dead_strip"
        strip = Image.open(io.BytesIO(acc.Images(tag)[-1].encoded_image_string)).convert("RGB")
        top, _, row_px, _ = strip_layout(units, 1, units, title=layer)
        body_end = top + units * row_px  # the strip's rows end here; legend and axis follow
        panels.append(strip.crop((0, 0, strip.width, top + min(rows, units) * row_px)))
        if footer is None:
            footer = strip.crop((0, body_end, strip.width, strip.height))
    width = sum(p.width + 8 for p in panels)
    out = Image.new(
        "RGB", (max(width, footer.width), max(p.height for p in panels) + footer.height)
    )
    x = 0
    for panel in panels:
        out.paste(panel, (x, 0))
        x += panel.width + 8
    out.paste(footer, (0, max(p.height for p in panels)))
    return out


def curves(acc: EventAccumulator) -> Image.Image:
    """Train vs val loss and accuracy per epoch; best epoch and diagnosis marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(tag: str) -> tuple[list[int], list[float]]:
        events = acc.Scalars(tag)
        return list(range(len(events))), [e.value for e in events]

    fig, axes = plt.subplots(1, 2, figsize=(8, 2.8), dpi=80)
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for split, tag in (("train", f"train/{metric}_epoch"), ("val", f"val/{metric}")):
            ax.plot(*series(tag), marker=".", label=split)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
    losses = series("val/loss")[1]
    best = int(np.nanargmin(losses))
    axes[0].axvline(best, color="green", ls=":", label=f"best val loss (epoch {best})")
    text = [t for t in acc.Tags()["tensors"] if t.startswith("overfitting/diagnosis")]
    if text:
        step = acc.Tensors(text[0])[0].step
        epochs = [e.step for e in acc.Scalars("val/loss")]
        detected = min(range(len(epochs)), key=lambda i: abs(epochs[i] - step))
        axes[0].axvline(detected, color="red", ls="--", label=f"diagnosis (epoch {detected})")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(buffer).convert("RGB")


def main(kind: str, run: str, out: str) -> None:
    """Write the ``kind`` picture of ``run`` to ``out``."""
    acc = _acc(run)
    if kind == "curves":
        image = curves(acc)
    elif kind == "dead":
        image = dead(acc)
    elif kind == "gradcam":
        labels = ("training images (with the marker)", "validation images (no marker)")
        parts = zip(("gradcam/train", "gradcam/val"), labels, strict=True)
        image = _stack([_image(acc, tag, label) for tag, label in parts])
    else:
        raise SystemExit(__doc__)
    image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=128)
    image.save(out, optimize=True)
    print(out, Path(out).stat().st_size, "bytes")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
