"""A real TensorBoard server over a real run with every monitor, read through its HTTP API and
looked at in headless Chromium.

The run: the reference ``MNISTClassifier`` on a few batches of synthetic digits, every
monitor logging at step 2 (``tests/monitors.py``), two epochs, about two seconds.
The server: ``python -m tensorboard.main`` exactly as a user starts it (default data loader,
``--samples_per_plugin images=200``) on 127.0.0.1 with a port the OS picks.
The browser part needs Chromium; it is skipped when none is found, unless
``CNNVIZ_REQUIRE_CHROMIUM=1`` (CI), which makes a missing browser a failure.
"""

from __future__ import annotations

import io
import os
import re
import time
import urllib.parse
import warnings

import pytest
import torch
from PIL import Image

from tests.monitors import ALL_MONITORS, make_monitor, section, trainer_for, written_tags
from tests.tb import events, texts
from tests.tensorboard_ui import chromium_page, find_chromium, tensorboard_server

RUN = "tb/version_0"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run with every monitor (ActivationMonitor with histograms)."""
    from lightning_cnnviz.reference import MNISTClassifier, SyntheticDigitsDataModule

    root = tmp_path_factory.mktemp("tensorboard_ui")
    torch.manual_seed(0)
    monitors = [
        make_monitor(name, **({"histograms": True} if name == "ActivationMonitor" else {}))
        for name in ALL_MONITORS
    ]
    trainer = trainer_for(root, monitors, max_epochs=2, limit_val_batches=2)
    data = SyntheticDigitsDataModule(train_size=64, val_size=32, batch_size=16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CPUs are shared; one thread is faster here
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(MNISTClassifier(), datamodule=data)
    finally:
        torch.set_num_threads(threads)
    failed = [str(w.message) for w in caught if " failed" in str(w.message)]
    assert not failed, failed
    return root


@pytest.fixture(scope="module")
def written(run_dir):
    return written_tags(run_dir)


@pytest.fixture(scope="module")
def server(run_dir, written):
    with tensorboard_server(run_dir) as tb:
        # The data server loads files in the background: wait until every tag is in.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            scalars = set(tb.get_json("/data/plugin/scalars/tags").get(RUN, {}))
            images = set(tb.get_json("/data/plugin/images/tags").get(RUN, {}))
            if written["scalars"] <= scalars and written["images"] <= images:
                break
            time.sleep(0.5)
        yield tb


def test_tensorboard_ui_serves_every_tag_written(server, written):
    # the run, and the train/val twins the overfitting monitor writes as runs of their own
    assert server.get_json("/data/runs") == [RUN, f"{RUN}/train", f"{RUN}/val"]
    scalars = set(server.get_json("/data/plugin/scalars/tags")[RUN])
    images = set(server.get_json("/data/plugin/images/tags")[RUN])
    text = {t.removesuffix("/text_summary") for t in server.get_json("/data/plugin/text/tags")[RUN]}
    histograms = set(server.get_json("/data/plugin/histograms/tags")[RUN])
    assert scalars == written["scalars"]
    assert images == written["images"]
    assert text == written["text"]
    assert histograms == set(events(server.logdir).Tags()["histograms"])
    # one dashboard section per monitor, as DESIGN.md names them
    shown = {t.split("/", 1)[0] for t in scalars | images | text | histograms}
    monitors = {section(name) for name in ALL_MONITORS}
    assert monitors <= shown | {"embeddings"}, monitors - shown  # embeddings: projector
    assert "cnnviz/layers" in text
    assert {"activations/relu1/histogram", "activations/relu2/histogram"} <= histograms


def test_tensorboard_ui_scalar_values_match_the_event_file(server):
    acc = events(server.logdir)
    for tag in acc.Tags()["scalars"]:
        # The data server keeps the last record of a step (Lightning writes `epoch` twice).
        want = {e.step: e.value for e in acc.Scalars(tag)}
        served = server.get_json("/data/plugin/scalars/scalars", run=RUN, tag=tag)
        assert [step for _, step, _ in served] == sorted(want), tag
        got = torch.tensor([value for _, _, value in served])
        torch.testing.assert_close(got, torch.tensor([want[s] for s in sorted(want)]), msg=tag)


def test_tensorboard_ui_images_decode_as_png_of_the_written_size(server, written):
    acc = events(server.logdir)
    for tag in sorted(written["images"]):
        records = acc.Images(tag)
        served = server.get_json("/data/plugin/images/images", run=RUN, tag=tag, sample=0)
        assert [s["step"] for s in served] == [r.step for r in records], tag  # none dropped
        data = server.get_bytes("/data/plugin/images/individualImage?" + served[-1]["query"])
        assert data == records[-1].encoded_image_string, tag
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG", tag
        assert image.size == (records[-1].width, records[-1].height), tag
        assert min(image.size) >= 16, (tag, image.size)


def test_tensorboard_ui_text_is_rendered_markdown(server):
    acc = events(server.logdir)
    served = server.get_json("/data/plugin/text/text", run=RUN, tag="cnnviz/layers/text_summary")
    steps = sorted({e.step for e in acc.Tensors("cnnviz/layers/text_summary")})
    assert [s["step"] for s in served] == steps  # one entry per step
    for entry in served:
        assert re.search(r"<strong>\w+Monitor</strong>", entry["text"]), entry["text"]
        assert "<code>" in entry["text"]  # backticked layer names rendered as code
    if "activations/diagnosis/text_summary" in acc.Tags()["tensors"]:  # units died in this run
        diagnosis = server.get_json(
            "/data/plugin/text/text", run=RUN, tag="activations/diagnosis/text_summary"
        )
        assert diagnosis and "Dead units" in diagnosis[-1]["text"]


def test_tensorboard_ui_shows_every_monitors_layer_list(server):
    """Monitors first logging at the same step share one entry: TensorBoard shows one per step."""
    written = {
        re.match(r"\*\*(\w+)\*\*", block).group(1)
        for entry in texts(events(server.logdir), "cnnviz/layers")
        for block in entry.split("\n\n")
    }
    served = server.get_json("/data/plugin/text/text", run=RUN, tag="cnnviz/layers/text_summary")
    shown = {m for entry in served for m in re.findall(r"<strong>(\w+)</strong>", entry["text"])}
    assert shown == written


def test_tensorboard_ui_custom_scalars_layout_of_overfitting_monitor(server, written):
    layout = server.get_json("/data/plugin/custom_scalars/layout")
    (category,) = layout["category"]
    assert category["title"].startswith("overfitting/")
    charts = {c["title"]: c["multiline"]["tag"] for c in category["chart"]}
    assert len(charts) >= 3, charts
    tags = server.get_json("/data/plugin/scalars/tags")
    for title, patterns in charts.items():
        for pattern in patterns:  # every line of every chart has data behind it
            assert any(re.search(pattern, t) for t in written["scalars"] | set(tags[RUN])) or all(
                any(re.search(pattern, t) for t in tags[f"{RUN}/{split}"])
                for split in ("train", "val")
            ), (title, pattern)
    # train and val of one chart are two runs, so TensorBoard draws them in two colours
    for split in ("train", "val"):
        assert {"overfitting/loss", "overfitting/accuracy"} <= set(tags[f"{RUN}/{split}"])


def test_tensorboard_ui_projector_serves_the_embeddings(server, written):
    assert server.get_json("/data/plugin/projector/runs") == [RUN]
    config = server.get_json("/data/plugin/projector/info", run=RUN)
    embeddings = config["embeddings"]
    names = {re.sub(r" \((latest, )?step \d+\)$", "", e["tensorName"]) for e in embeddings}
    assert names == written["projector"]
    # the Projector opens on the first name in sorted order: the newest step's tensor
    assert len(embeddings) > len(names)  # several steps of a tag
    first = min(e["tensorName"] for e in embeddings)
    newest = max(embeddings, key=lambda e: int(e["tensorPath"].split("/")[0]))
    assert first == newest["tensorName"] and "latest" in first, first
    last = newest
    rows, dims = last["tensorShape"]
    assert rows >= 4 and dims >= 2
    tensor = server.get_bytes("/data/plugin/projector/tensor", run=RUN, name=last["tensorName"])
    assert len(tensor) == rows * dims * 4  # float32, row-major
    assert torch.isfinite(torch.frombuffer(bytearray(tensor), dtype=torch.float32)).all()
    metadata = server.get_bytes("/data/plugin/projector/metadata", run=RUN, name=last["tensorName"])
    assert len(metadata.decode().strip().splitlines()) == rows + 1  # header + one per point
    sprite = server.get_bytes(
        "/data/plugin/projector/sprite_image", run=RUN, name=last["tensorName"]
    )
    image = Image.open(io.BytesIO(sprite))
    assert image.format == "PNG"
    tile = last["sprite"]["singleImageDim"]
    assert image.size[0] % tile[0] == 0 and image.size[0] >= tile[0]


# ------------------------------------------------------------------- in the browser
@pytest.fixture(scope="module")
def page():
    if find_chromium() is None:
        if os.environ.get("CNNVIZ_REQUIRE_CHROMIUM") == "1":
            pytest.fail("CNNVIZ_REQUIRE_CHROMIUM=1 but no Chromium found ($CHROMIUM, chromium)")
        pytest.skip("no Chromium found (install Debian's `chromium` or set $CHROMIUM)")
    with chromium_page(width=1400, height=1000) as tab:
        yield tab


def assert_not_blank(png: bytes, size=(1400, 1000)) -> None:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == size
    gray = torch.frombuffer(bytearray(image.convert("L").tobytes()), dtype=torch.uint8).float()
    assert gray.std() > 10, f"screenshot looks blank (std {gray.std():.1f})"
    assert len(image.convert("RGB").getcolors(1 << 24)) > 50  # more than a flat page


def dashboard(page, server, fragment: str, needles: list[str]) -> str:
    page.goto(f"{server.url}/{fragment}")
    text = page.wait_for_text(needles, timeout=30)
    missing = [n for n in needles if n not in text]
    assert not missing, f"{fragment}: {missing} not rendered; page text:\n{text[:2000]}"
    assert_not_blank(page.screenshot())
    return text


def test_tensorboard_ui_browser_images_dashboard(page, server, written):
    images = sorted(written["images"])
    text = dashboard(page, server, "#images", ["images", *{t.split("/")[0] for t in images}])
    assert RUN in text
    # Every image tag's card, through the tag filter (the dashboard pages 12 cards at a time).
    for first in range(0, len(images), 12):
        chunk = images[first : first + 12]
        pattern = "^(" + "|".join(re.escape(t) for t in chunk) + ")$"
        dashboard(page, server, "#images&tagFilter=" + urllib.parse.quote(pattern), chunk)


def test_tensorboard_ui_browser_scalars_text_custom_scalars_projector(page, server, written):
    activation = sorted(t for t in written["scalars"] if t.startswith("activations/"))
    if activation:
        dashboard(page, server, "#scalars&tagFilter=^activations/", activation[:6])
    dashboard(page, server, "#text", ["cnnviz/layers/text_summary", "Monitor"])
    dashboard(page, server, "#custom_scalars", ["overfitting/train vs val", "generalisation gap"])
    # the projector is an iframe; its left panel counts the tensors of the run
    embeddings = server.get_json("/data/plugin/projector/info", run=RUN)["embeddings"]
    dashboard(page, server, "#projector", [f"{len(embeddings)} tensor", "Label by"])


# Each <img> of the Images dashboard: its card's tag, rendered width and natural width.
_IMAGE_SIZES = """(() => { const out = [];
  const walk = (n) => {
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.children || []) walk(c);
    if (n.tagName === 'IMG' && n.naturalWidth > 0) {
      let p = n, tag = null;
      while (p && !tag) { tag = p.tag || null; p = p.parentNode || p.host; }
      out.push([tag, n.clientWidth, n.naturalWidth]);
    }
  };
  walk(document.documentElement);
  return JSON.stringify(out); })()"""
# Text drawn larger than the bitmap font's 11 px: per-class bars and confused pairs at 2x.
_GLYPH_SCALE = {"overfitting/per_class": 2, "overfitting/confused_pairs": 2}


def test_tensorboard_ui_browser_labels_legible_at_card_width(page, server, written):
    """At the default card width each picture's label glyphs render at least 7 px tall."""
    import json

    from lightning_cnnviz.core import labels

    images, seen = sorted(written["images"]), {}
    for first in range(0, len(images), 12):
        chunk = images[first : first + 12]
        pattern = "^(" + "|".join(re.escape(t) for t in chunk) + ")$"
        dashboard(page, server, "#images&tagFilter=" + urllib.parse.quote(pattern), chunk)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not set(chunk) <= seen.keys():
            for tag, shown, natural in json.loads(page.evaluate(_IMAGE_SIZES)):
                seen[tag] = (shown, natural)
            time.sleep(0.5)
    assert set(images) <= seen.keys(), sorted(set(images) - seen.keys())
    small = {}
    for tag in images:
        shown, natural = seen[tag]
        glyph = labels.GLYPH_H * _GLYPH_SCALE.get(tag, 1) * shown / natural
        if glyph < labels.MIN_GLYPH_PX:
            small[tag] = (round(glyph, 1), shown, natural)
    assert not small, f"glyphs under {labels.MIN_GLYPH_PX} px (px, card, image width): {small}"
