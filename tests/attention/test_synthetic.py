"""The object decides the class: after short training, Grad-CAM and rollout sit on the object."""

from __future__ import annotations

import pytest
import torch

from benchmarks.attention import object_task, shares, train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def test_object_task_masks_the_coloured_square():
    x, y, mask = object_task(8, seed=0)
    assert mask.sum((1, 2)).tolist() == [36] * 8  # one 6x6 object each
    colour = (x * mask[:, None]).sum((2, 3)) / 36
    assert (colour.argmax(1)[y != 3] == y[y != 3]).all()  # red, green, blue (yellow: R=G)


def test_gradcam_and_rollout_put_more_mass_on_object_than_its_area(tmp_path):
    torch.set_num_threads(1)
    model, monitor, times, _ = train(steps=160, every=80, root=str(tmp_path), n_train=1024)
    result = shares(model, n=64)
    assert monitor.events == 2 and len(times) == 160
    assert result["accuracy"] > 0.9, result
    assert result["gradcam_on_object"] > 3 * result["area_share"], result
    assert result["rollout_on_object"] > 3 * result["area_share"], result
    assert result["rollout_above_area"] > 0.8, result
