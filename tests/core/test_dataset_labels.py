"""``dataset_labels``: one class index per item, read without loading items, or nothing."""

import pytest
import torch
from torch.utils.data import Dataset

from lightning_cnnviz.core.dataset_labels import dataset_labels
from lightning_cnnviz.core.probe import draw_probe


class Annotated(Dataset):
    """Digits-like items whose ``targets`` attribute is whatever a real dataset keeps there."""

    def __init__(self, targets, n=12):
        self.targets, self.n = targets, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((1, 2, 2), float(i)), i % 3


@pytest.mark.parametrize(
    "targets",
    [
        [f"SegmentationClass/{i}.png" for i in range(12)],  # VOCSegmentation, Cityscapes: paths
        ["cat", "dog", "owl"] * 4,  # class names
        [0, 1, 2],  # the classes, not the items' labels
        list(range(3)) * 2,  # a repeating set's underlying labels (half the items)
        [[0, 1, 1]] * 12,  # multi-label table
    ],
)
def test_dataset_labels_not_one_class_per_item_read_from_the_items(targets):
    data = Annotated(targets)
    assert dataset_labels(data) is None
    probe = draw_probe(data, 6, torch.Generator().manual_seed(0))
    assert sorted(probe.labels.tolist()) == [0, 0, 1, 1, 2, 2]  # read from the items
    assert all(int(x[0, 0, 0]) % 3 == y for x, y in zip(probe.images, probe.labels, strict=True))
