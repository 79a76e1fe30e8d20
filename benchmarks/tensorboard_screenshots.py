"""The README's TensorBoard screenshots, from real runs in a real browser.

Runs the quickstart as a user would (``cnnviz fit --config configs/quickstart.yaml``)
into a temporary folder, or uses ``--logdir`` of a folder holding a finished run;
starts TensorBoard on it exactly as the README says (``--samples_per_plugin
images=200``), opens the dashboards in headless Chromium (``tests/tensorboard_ui.py``)
as a user first sees them (no tag filter) and saves:

* ``tensorboard_scalars.png``: the Scalars dashboard;
* ``tensorboard_images.png``: the Images dashboard;
* ``tensorboard_text.png``: the Text dashboard (the run's summary and layer selections);
* ``tensorboard_custom_scalars.png``: Custom Scalars, train vs val in two colours.

Each is a PNG under 300 KB (quantised to a 256-colour palette when needed).

Usage::

    python benchmarks/tensorboard_screenshots.py [--logdir RUNS_DIR] [--out docs/images]

Needs Chromium (``$CHROMIUM`` or ``chromium`` on the PATH). The fit takes one to two
minutes on 2 CPU cores; the screenshots about half a minute.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tensorboard_ui import chromium_page, tensorboard_server  # noqa: E402

MAX_BYTES = 300_000

# Every <img> in every shadow root loaded (TensorBoard loads image cards after the text).
_IMAGES_LOADED = """(() => {
  const imgs = [];
  const walk = (n) => {
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.children || []) walk(c);
    if (n.tagName === 'IMG') imgs.push(n);
  };
  walk(document.documentElement);
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
})()"""


CONFIGS = ("quickstart",)


def fit_configs(save_dir: Path) -> Path:
    """Runs each of CONFIGS into ``save_dir`` (one run folder each); returns ``save_dir``."""
    for name in CONFIGS:
        command = [
            "cnnviz", "fit", "--config", str(ROOT / "configs" / f"{name}.yaml"),
            "--trainer.logger.init_args.save_dir", str(save_dir),
            "--trainer.enable_progress_bar", "false",
        ]  # fmt: skip
        print("running:", " ".join(command), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        print(f"{name} fit took {time.perf_counter() - start:.0f} s", flush=True)
    return save_dir


def save_small(png: bytes, path: Path, crop: tuple[int, int, int, int] | None) -> None:
    """Saves ``png`` (cropped to ``crop``) under MAX_BYTES: optimised, else a 256-colour palette."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if crop is not None:
        image = image.crop(crop)
    for attempt in range(4):
        buffer = io.BytesIO()
        if attempt == 0:
            image.save(buffer, "PNG", optimize=True)
        else:
            scale = 1.0 - 0.15 * (attempt - 1)
            size = (round(image.width * scale), round(image.height * scale))
            small = image.resize(size, Image.LANCZOS) if scale < 1 else image
            small.quantize(256, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES:
            break
    path.write_bytes(buffer.getvalue())
    print(f"wrote {path} ({buffer.tell() / 1000:.0f} KB)")


def shoot(page, url: str, needles: list[str], images: bool = False, settle_s: float = 2.0) -> bytes:
    page.goto(url)
    text = page.wait_for_text(needles, timeout=60)
    missing = [n for n in needles if n not in text]
    if missing:
        raise RuntimeError(f"{url}: {missing} not rendered")
    deadline = time.monotonic() + 30
    while images and time.monotonic() < deadline and not page.evaluate(_IMAGES_LOADED):
        time.sleep(0.5)
    time.sleep(settle_s)  # charts animate in
    return page.screenshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logdir", type=Path, help="finished runs (default: fit CONFIGS)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cnnviz-shots-") as tmp:
        logdir = args.logdir or fit_configs(Path(tmp))
        with tensorboard_server(logdir) as tb, chromium_page(1400, 1000) as page:
            print("TensorBoard at", tb.url, "on", logdir, "runs", tb.get_json("/data/runs"))
            png = shoot(page, f"{tb.url}/#scalars", ["activations", "overfitting"])
            save_small(png, args.out / "tensorboard_scalars.png", crop=None)

            png = shoot(page, f"{tb.url}/#images", ["activations", "gradcam"], images=True)
            save_small(png, args.out / "tensorboard_images.png", crop=None)

            png = shoot(page, f"{tb.url}/#custom_scalars", ["train vs val", "accuracy"])
            save_small(png, args.out / "tensorboard_custom_scalars.png", crop=None)

            page.call(  # taller: the summary and every monitor's layer selection
                "Emulation.setDeviceMetricsOverride",
                width=1400, height=1560, deviceScaleFactor=1, mobile=False,
            )  # fmt: skip
            png = shoot(page, f"{tb.url}/#text", ["cnnviz/summary", "cnnviz/layers"])
            save_small(png, args.out / "tensorboard_text.png", crop=None)


if __name__ == "__main__":
    main()
