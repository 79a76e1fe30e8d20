"""Each logger of each Lightning package, and what reached it, read back from its own files.

``make_logger(kind, namespace, root)`` builds a logger that writes under ``root``:
TensorBoard, CSV, W&B (offline), MLflow (file store) or none (``logger=False``).
``written(kind, root)`` reads back what a run left there, with each tool's own
layout: event files, W&B's offline run (media files and the history records of its
``.wandb`` log), MLflow's file store, the run's ``cnnviz`` folder and ``metrics.csv``.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tests.monitors import TinyCNN
from tests.tb import events, projector_tags

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_CONSOLE", "off")  # W&B would wrap (and garble) our stdout
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for a database

LOGGERS = ["tensorboard", "csv", "wandb", "mlflow", "none"]
NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]


def package(namespace: str) -> Any:
    return importlib.import_module(namespace)


def make_logger(kind: str, namespace: str, root: Path) -> Any:
    """A logger of ``namespace`` writing under ``root`` (``False`` for ``"none"``)."""
    loggers = importlib.import_module(f"{namespace}.loggers")
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(str(root), name="tb")
    if kind == "csv":
        return loggers.CSVLogger(str(root), name="csv")
    if kind == "wandb":
        return loggers.WandbLogger(save_dir=str(root), offline=True, project="cnnviz")
    if kind == "mlflow":
        return loggers.MLFlowLogger(experiment_name="cnnviz", tracking_uri=f"file:{root}/mlruns")
    assert kind == "none", kind
    return False


def finish(logger: Any) -> None:
    """Finish a run as the end of fit does, and close a W&B run (its files are complete then)."""
    if logger is False:
        return
    logger.finalize("success")
    if type(logger).__name__ == "WandbLogger":
        import wandb

        logger.experiment.finish()
        wandb.teardown()  # waits for W&B's service to write the run's log to disk


def model_for(namespace: str) -> Any:
    """``TinyCNN``'s layers (as ``net.*``) in a LightningModule of ``namespace``."""

    class Net(package(namespace).LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = TinyCNN()

        def forward(self, x):
            return self.net(x)

        def _step(self, batch, stage):
            logits = self(batch[0])
            loss = F.cross_entropy(logits, batch[1])
            self.log(f"{stage}/loss", loss)
            self.log(f"{stage}/acc", (logits.argmax(1) == batch[1]).float().mean())
            return loss

        def training_step(self, batch, batch_idx):
            return self._step(batch, "train")

        def validation_step(self, batch, batch_idx):
            self._step(batch, "val")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    return Net()


# ------------------------------------------------------------------- reading back
def _wandb_history(run_file: Path) -> list[dict[str, str]]:
    """The history rows of an offline ``.wandb`` run log (LevelDB log blocks of records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw, block, pos = run_file.read_bytes(), 32768, 7  # a 7-byte ":W&B" header first
    rows, chunk = [], b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7 or raw[pos : pos + 7] == bytes(7):  # block padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        chunk += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                )
    return rows


def _folder(folder: Path) -> dict[str, Any]:
    images = {p.parent.relative_to(folder).as_posix() for p in folder.rglob("*.png")}
    text = {p.stem: p.read_text() for p in folder.glob("*.md")}
    return {"images": images, "text": text}


def written(kind: str, root: Path) -> dict[str, Any]:
    """``{"images": tags, "text": {tag: text}, "scalars": names, "where": path}`` under ``root``."""
    if kind == "tensorboard":
        acc = events(root / "tb")
        tags = acc.Tags()
        text = {}
        for tag in tags["tensors"]:
            if tag.endswith("/text_summary"):
                entries = acc.Tensors(tag)
                text[tag.removesuffix("/text_summary")] = b"".join(
                    entries[-1].tensor_proto.string_val
                ).decode()
        return {
            "images": set(tags["images"]),
            "text": text,
            "scalars": set(tags["scalars"]),
            "histograms": set(tags["histograms"]),
            "projector": projector_tags(root / "tb"),
            "where": root / "tb",
        }
    if kind == "wandb":
        (run,) = (root / "wandb").glob("offline-run-*")
        rows = _wandb_history(next(run.glob("run-*.wandb")))
        images, text, scalars = set(), {}, set()
        for row in rows:
            media = {k.removesuffix("/_type"): v for k, v in row.items() if k.endswith("/_type")}
            for tag, kind_of in media.items():
                if kind_of == '"images/separated"':
                    images.add(tag)
                elif kind_of == '"table-file"':
                    table = json.loads((run / "files" / json.loads(row[f"{tag}/path"])).read_text())
                    text[tag] = table["data"][-1][1]
            fields = {f"{t}/" for t in media}
            scalars |= {k for k in row if not k.startswith(("_", "trainer/", *fields))}
        return {"images": images, "text": text, "scalars": scalars, "where": run}
    if kind == "mlflow":
        (run,) = [p for p in (root / "mlruns").glob("*/*") if (p / "artifacts").is_dir()]
        art = run / "artifacts" / "cnnviz"
        images = {p.parent.relative_to(art).as_posix() for p in art.rglob("*.png")}
        text = {
            p.parent.relative_to(art).as_posix(): p.read_text() for p in sorted(art.rglob("*.md"))
        }
        text = {("cnnviz/" + t if t == "layers" else t): v for t, v in text.items()}
        images = {("cnnviz/" + t if t == "layers" else t) for t in images}
        metrics = run / "metrics"
        scalars = {p.relative_to(metrics).as_posix() for p in metrics.rglob("*") if p.is_file()}
        return {"images": images, "text": text, "scalars": scalars, "where": run}
    base = root / "csv" / "version_0" if kind == "csv" else root
    (folder,) = base.glob("cnnviz*")
    found = _folder(folder)
    found["scalars"] = set()
    if kind == "csv":
        header = (base / "metrics.csv").read_text().splitlines()[0].split(",")
        found["scalars"] = set(header) - {"epoch", "step"}
    found["where"] = folder
    return found
