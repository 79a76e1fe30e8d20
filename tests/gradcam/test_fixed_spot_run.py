"""A cue at one fixed place, on bright coloured images where the brightness mask is blocked:
found by the fixed-spot rule alone, read back from findings and TensorBoard."""

import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from tests.tb import events, texts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from coloured_shapes import ColouredShapes, shapes_cnn


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.body = shapes_cnn()

    def forward(self, x):
        return self.body(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fixed_spot_run_corner_cue_found_where_the_mask_is_blocked(tmp_path):
    L.seed_everything(0, verbose=False)
    monitor = GradCAMMonitor(every_n_steps=10, num_samples=8, misclassified=False)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=40, logger=TensorBoardLogger(tmp_path, name="tb"),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[monitor], limit_val_batches=1, num_sanity_val_steps=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Net(), ColouredShapes(train=2000, val=200))
    assert float(trainer.callback_metrics["val/acc"]) > 0.9  # the cue is on val images too
    (shortcut,) = [f for f in findings_of(trainer) if f.kind == "cam_shortcut"]
    assert shortcut.severity == "problem" and shortcut.step <= 40
    assert shortcut.figures["splits"] == "fixed" and shortcut.figures["region"] == "top-left corner"
    cam, content = shortcut.figures["cam_agreement"], shortcut.figures["content_agreement"]
    assert cam >= 0.7 and cam - content >= 0.5 * (1 - content)
    acc = events(tmp_path / "tb")
    (text,) = texts(acc, "gradcam/diagnosis")
    assert "same place (the top-left corner)" in text
    agree = {e.step: e.value for e in acc.Scalars("gradcam/train/cam_agreement")}
    content = {e.step: e.value for e in acc.Scalars("gradcam/val/content_agreement")}
    assert sorted(agree) == sorted(content) == [10, 20, 30, 40]
    assert agree[shortcut.step] == pytest.approx(shortcut.figures["cam_agreement"], abs=1e-6)
    # the brightness mask covers the bright backdrop: only the fixed-spot rule could tell
    assert acc.Scalars("gradcam/train/object_share")[-1].value > 0.5
