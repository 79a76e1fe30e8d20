"""Save the last image of chosen TensorBoard tags of a run as PNG files (the docs' pictures).

Usage::

    python docs/export_images.py RUN_DIR OUT_DIR TAG=NAME.png [TAG=NAME.png ...]

e.g. ``python docs/export_images.py runs/quickstart/version_0 docs/images
kernels/conv1=kernels_conv1.png``. The PNG bytes are those the monitor wrote
(re-encoded with Pillow's ``optimize`` to keep the files small).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def export(run: str, out: str, pairs: list[str]) -> list[Path]:
    """Write ``TAG=NAME.png`` pairs of ``run`` under ``out``; returns the files written."""
    acc = EventAccumulator(run, size_guidance={"images": 0})
    acc.Reload()
    written = []
    for pair in pairs:
        tag, _, name = pair.partition("=")
        if tag not in acc.Tags()["images"]:
            raise SystemExit(f"{tag!r} not in {run}; images there: {acc.Tags()['images']}")
        path = Path(out) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(io.BytesIO(acc.Images(tag)[-1].encoded_image_string))
        image.save(path, optimize=True)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    for path in export(sys.argv[1], sys.argv[2], sys.argv[3:]):
        print(path, path.stat().st_size, "bytes")
