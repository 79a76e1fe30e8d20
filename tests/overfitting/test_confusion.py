"""The confusion matrix in TensorBoard: drawn up to ``MAX_DRAWN`` classes, said above."""

import io

import numpy as np
from PIL import Image

from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.overfitting.confusion import MAX_DRAWN
from tests.monitors import TinyCNN, fit
from tests.tb import events


def test_confusion_a_head_wider_than_40_classes_is_drawn_at_smaller_cells(tmp_path):
    # setups hunt 49: a 100-wide head on labels 0-3 wrote no `overfitting/confusion`, unsaid
    _, _, said = fit(tmp_path, [OverfittingMonitor()], model=TinyCNN(classes=100))
    (shown,) = events(tmp_path / "tb").Images("overfitting/confusion")
    image = np.asarray(Image.open(io.BytesIO(shown.encoded_image_string)))
    assert image.shape[1] == 400  # 100 classes at 4 pixels
    assert not [m for m in said if "confusion matrix" in m]


def test_confusion_a_head_past_max_drawn_is_said_once(tmp_path):
    classes = MAX_DRAWN + 1
    _, _, said = fit(tmp_path, [OverfittingMonitor()], model=TinyCNN(classes=classes), max_epochs=2)
    assert "overfitting/confusion" not in events(tmp_path / "tb").Tags()["images"]
    told = [m for m in said if "confusion matrix is not drawn" in m]
    assert len(told) == 1 and f"({classes} here)" in told[0]
