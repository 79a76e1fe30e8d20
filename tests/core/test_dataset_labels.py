"""``dataset_labels``: one class index per item, read without loading items, or nothing."""

import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset, default_collate

from lightning_cnnviz.core.collated import Collated, Unbatched
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


def test_dataset_labels_through_a_collated_view_of_a_subset_taken_once():
    # setups hunt 36: `random_split` read through a normalising collate had its indices
    # applied twice (an IndexError in every probe monitor)
    data = TensorDataset(torch.rand(10, 1, 2, 2), torch.arange(10) % 5)
    part = Subset(data, [9, 7, 5, 3])
    view = Collated(part, lambda batch: default_collate(batch))
    assert dataset_labels(view).tolist() == [4, 2, 0, 3]
    assert dataset_labels(Unbatched(part, per=2, size=8)) is None
