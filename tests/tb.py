"""Read back what was really written to TensorBoard event files."""

from __future__ import annotations

import re
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_cnnviz.core.logs import event_folder

_ALL = {"images": 0, "scalars": 0, "tensors": 0, "histograms": 0}


def events(logdir: str | Path) -> EventAccumulator:
    """All records of the run under ``logdir`` (``core.logs.event_folder``: its own folder).

    The monitors' ``train`` and ``val`` runs below it are read with ``events(<run>/train)``.
    """
    acc = EventAccumulator(str(event_folder(logdir)), size_guidance=_ALL)
    acc.Reload()
    return acc


def texts(acc: EventAccumulator, tag: str) -> list[str]:
    """Text entries of ``tag`` (TensorBoard stores them as string tensors)."""
    return [
        b"".join(e.tensor_proto.string_val).decode() for e in acc.Tensors(f"{tag}/text_summary")
    ]


def layer_lists(acc: EventAccumulator) -> list[str]:
    """Each monitor's ``cnnviz/layers`` block, as TensorBoard shows them.

    Monitors logging first at the same step share one entry (the last one written
    at that step holds them all), so the last entry per step is split into blocks.
    """
    last = {e.step: b"".join(e.tensor_proto.string_val).decode()
            for e in acc.Tensors("cnnviz/layers/text_summary")}  # fmt: skip
    return [block for entry in last.values() for block in entry.split("\n\n")]


def image_tags(acc: EventAccumulator) -> list[str]:
    return acc.Tags()["images"]


def projector_tags(root: str | Path) -> set[str]:
    """The tags of the Projector's tensors under ``root`` (names are ``<tag> (step N)``)."""
    return {
        re.sub(r" \((latest, )?step \d+\)$", "", name)
        for config in Path(root).rglob("projector_config.pbtxt")
        for name in re.findall(r'tensor_name: "([^"]+)"', config.read_text())
    }
