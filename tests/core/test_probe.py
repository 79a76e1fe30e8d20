import itertools
import time
import warnings

import pytest
import torch
from torch.utils.data import Dataset, IterableDataset, Subset, TensorDataset, default_collate

from lightning_cnnviz.core.batches import batch_inputs
from lightning_cnnviz.core.dataset_labels import dataset_labels
from lightning_cnnviz.core.items import ITERABLE_HEAD, iterable_head, split_sample
from lightning_cnnviz.core.probe import draw_probe, labels_in_order, probe_from_indices
from lightning_cnnviz.core.say import CnnvizWarning


class DictDataset(Dataset):
    def __init__(self, n=30):
        self.x = torch.randn(n, 1, 4, 4)
        self.y = torch.arange(n) % 3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


def tensor_data(n=50, classes=5):
    return TensorDataset(torch.randn(n, 1, 4, 4), torch.arange(n) % classes)


def test_probe_is_class_balanced_and_seeded():
    data = tensor_data()
    a = draw_probe(data, 10, torch.Generator().manual_seed(3))
    b = draw_probe(data, 10, torch.Generator().manual_seed(3))
    c = draw_probe(data, 10, torch.Generator().manual_seed(4))
    assert a.indices == b.indices and a.indices != c.indices
    assert sorted(a.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert a.images.device.type == "cpu" and a.images.shape == (10, 1, 4, 4)


def test_probe_leaves_global_rng_untouched():
    data = tensor_data()
    state = torch.get_rng_state()
    draw_probe(data, 8, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


class Curriculum(Dataset):
    """Counts its reads; noise grows with them (a curriculum kept in the dataset)."""

    def __init__(self):
        self.inner = tensor_data()
        self.reads = 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.reads += 1
        x, y = self.inner[i]
        return x + 0.001 * self.reads, y


def test_probe_reads_leave_a_datasets_counters_as_they_were():
    # setups hunt 23: the probes' reads counted, and training read noisier items
    data = Curriculum()
    draw_probe(data, 10, torch.Generator().manual_seed(0))
    probe_from_indices(data, [1, 2, 3])
    labels_in_order(Subset(data, range(20)), torch.arange(20), 20)
    assert data.reads == 0
    data[0]
    assert data.reads == 1  # the dataset's own reads still count


def test_probe_round_trips_through_indices():
    data = tensor_data()
    probe = draw_probe(data, 7, torch.Generator().manual_seed(1))
    again = probe_from_indices(data, list(probe.indices))
    assert torch.equal(again.images, probe.images) and torch.equal(again.labels, probe.labels)


def test_probe_reads_dicts_subsets_and_bare_tensors():
    probe = draw_probe(DictDataset(), 6, torch.Generator().manual_seed(0))
    assert sorted(probe.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    data = tensor_data()
    sub = Subset(data, list(range(10, 20)))
    assert dataset_labels(sub).tolist() == (torch.arange(10, 20) % 5).tolist()
    bare = draw_probe([torch.zeros(1, 2, 2)] * 5, 3, torch.Generator().manual_seed(0))
    assert bare.labels is None and bare.images.shape == (3, 1, 2, 2)
    assert split_sample((torch.zeros(1), torch.tensor(4)))[1] == 4


def test_probe_larger_than_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match=r"`num_samples` \(60\) is larger than the dataset"):
        draw_probe(tensor_data(), 60, torch.Generator())


class Stream(IterableDataset):
    """A stream with random augmentation: no ``len``, no ``[i]``."""

    def __init__(self, n=400):
        self.data = tensor_data(n, classes=4)

    def __iter__(self):
        for x, y in self.data:
            yield x + 0.1 * torch.randn_like(x), y


def test_probe_from_an_iterable_reads_its_head_once_rng_untouched():
    stream = Stream()
    state = torch.get_rng_state()
    head = iterable_head(stream)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(head) == ITERABLE_HEAD and iterable_head(stream) is head  # read once
    probe = draw_probe(head, 8, torch.Generator().manual_seed(0))
    assert sorted(probe.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert max(probe.indices) < ITERABLE_HEAD


def test_probe_labels_are_class_indices_only():
    import numpy as np

    x = torch.zeros(1, 2, 2)
    assert split_sample((x, np.int64(3)))[1] == 3  # a NumPy integer is a class
    assert split_sample((x, torch.tensor(3.7)))[1] is None  # a regression target is not
    assert split_sample((x, 2.0))[1] is None and split_sample((x, True))[1] is None
    regression = TensorDataset(torch.randn(6, 1, 2, 2), torch.randn(6) * 5)
    assert dataset_labels(regression) is None
    probe = draw_probe(regression, 4, torch.Generator().manual_seed(0))
    assert probe.labels is None and len(probe) == 4


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (torch.tensor([0.0, 1.0, 1.0, 0.0]), "multi-hot vectors (multi-label)"),
        (torch.tensor([0, 0, 1, 0]), "one-hot vectors"),
        (torch.tensor([0.2, 0.7, 0.1]), "class distributions (soft labels)"),
        (torch.tensor(2.5), "real numbers (regression)"),
        (torch.tensor([3.7]), "real numbers (regression)"),
        (
            torch.tensor([3.0]),
            "whole numbers stored as floats (3.0, 3.0, 3.0: class indices? "
            "store them as integers, `torch.long`, to have them read as classes)",
        ),
        (torch.zeros(4, 4, dtype=torch.long), "per-pixel class maps (segmentation)"),
        (torch.tensor(3), ""),
        (3, ""),
        ("cat", "str values"),
    ],
)
def test_probe_target_says_what_items_carry_instead_of_a_class(target, words):
    data = [(torch.rand(1, 4, 4), target) for _ in range(6)]
    probe = draw_probe(data, 3, torch.Generator().manual_seed(0))
    assert probe.target == words
    assert (probe.labels is None) == bool(words)


def test_probe_labels_read_from_items_once_for_every_monitor():
    # setups hunt 19: GradCAM and Overfitting each read up to 2048 whole training items (a
    # decode and an augmentation each) to find their labels
    # an iterator: state no read can put back (a list its code holds is put back after each)
    reads = itertools.count()

    class Counted(Dataset):
        def __len__(self) -> int:
            return 50

        def __getitem__(self, i):
            next(reads)
            return torch.zeros(1, 2, 2), i % 5

    data, order = Counted(), torch.randperm(50, generator=torch.Generator().manual_seed(0))
    first = labels_in_order(data, order, pool=30)
    assert next(reads) == 30 and first[1].tolist() == [int(i) % 5 for i in order[:30]]
    again = labels_in_order(data, order, pool=40)  # another monitor, a larger pool
    assert next(reads) == 31 + 10 and torch.equal(again[1][:30], first[1])


def test_probe_items_with_an_ignored_label_are_left_out_of_a_balanced_probe(tmp_path):
    # setups hunt 20: labels of PyTorch's `ignore_index` (-100) reached the per-class
    # figures ("IndexError: index out of range in self"): OverfittingMonitor stepped aside
    from torch.utils.data import DataLoader, TensorDataset

    from tests.monitors import digits, fit, make_monitor, section, written_tags

    x, y = digits(40, seed=1).tensors
    y = y.clone()
    y[::4] = -100
    probe = draw_probe(TensorDataset(x, y), 16, torch.Generator().manual_seed(0))
    assert len(probe) == 16 and bool((probe.labels >= 0).all())
    unlabelled = TensorDataset(x, torch.full_like(y, -100))
    assert len(draw_probe(unlabelled, 8, torch.Generator().manual_seed(0))) == 8
    monitor = make_monitor("OverfittingMonitor", strict=True)
    loaders = (DataLoader(TensorDataset(x, y), 8), DataLoader(TensorDataset(x, y), 8))
    fit(tmp_path, [monitor], data=loaders, max_epochs=2)
    assert monitor.events > 0 and not monitor.disabled
    scalars = written_tags(tmp_path)["scalars"]
    assert any(t.startswith(section("OverfittingMonitor")) for t in scalars)


def test_probe_whole_number_float_targets_are_named_as_such_not_regression():
    # setups hunt 20: class indices stored as floats (3.0) were called "regression"
    from lightning_cnnviz.core.targets import target_words

    x = torch.zeros(1, 2, 2)
    said = target_words([(x, torch.tensor(3.0)), (x, torch.tensor(7.0))])
    assert said.startswith("whole numbers stored as floats (3.0, 7.0: class indices?")
    assert target_words([(x, torch.tensor(0.3)), (x, torch.tensor(2.0))]).startswith("real")


class Corrupt(Dataset):
    """Every fifth item unreadable: ``None``, for a ``collate_fn`` that drops it."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return None if i % 5 == 0 else self.data[i]


def test_probe_items_that_are_none_are_left_out(tmp_path):
    # held out (setups hunt 22): seven monitors of `full` stepped aside on "cannot find the
    # input tensor in a dataset item of type NoneType"
    from torch.utils.data import DataLoader, default_collate

    from tests.monitors import ALL_MONITORS, assert_every_monitor_wrote, digits, fit, make_monitor

    data = Corrupt(digits(60, seed=1))
    for balanced in (True, False):
        probe = draw_probe(data, 16, torch.Generator().manual_seed(0), class_balanced=balanced)
        assert len(probe) == 16 and all(i % 5 for i in probe.indices)
    assert probe_from_indices(data, [0, 1, 5, 6]).indices == [1, 6]

    def drop_none(items):
        return default_collate([item for item in items if item is not None])

    monitors = [make_monitor(name) for name in ALL_MONITORS]
    loaders = [DataLoader(data, 8, collate_fn=drop_none) for _ in range(2)]
    _, _, messages = fit(tmp_path, monitors, data=loaders, max_epochs=2)
    assert_every_monitor_wrote(tmp_path, monitors, messages)


class Sized(Dataset):
    """Digits-like items at their own sizes (20, 24 or 28 pixels), as a bucketing loader has."""

    def __len__(self):
        return 60

    def __getitem__(self, i):
        side = (20, 24, 28)[i % 3] if i % 5 else 28
        return torch.full((1, side, side), float(i)), i % 4


def test_probe_of_images_at_their_own_sizes_keeps_the_commonest_size():
    # setups hunt 25: a multi-resolution dataset made 7 monitors "fail" on torch.stack
    # setups hunt 60: ... and the rest of a balanced probe, read again of that size (a probe
    # of 8 had shrunk to 4 images of 2 classes, and Grad-CAM judged a shortcut on them)
    probe = draw_probe(Sized(), 16, torch.Generator().manual_seed(0))
    assert probe.images.shape[1:] == (1, 28, 28) and len(probe) == 16
    assert [int(x[0, 0, 0]) for x in probe.images] == probe.indices  # each image its own
    assert probe.labels.tolist() == [i % 4 for i in probe.indices]
    assert probe.labels.bincount().tolist() == [4, 4, 4, 4]


class OwnSize(Dataset):
    """Class 3 at 20 pixels, the others at 16 (a class photographed by another camera)."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        side = 20 if i % 4 == 3 else 16
        return torch.full((1, side, side), float(i)), i % 4


def test_probe_of_a_class_at_its_own_size_says_once_that_it_is_left_out():
    # setups hunt 61: every probe lacked class 3, and nothing said so
    data = OwnSize()
    with pytest.warns(CnnvizWarning) as said:
        probe = draw_probe(data, 8, torch.Generator().manual_seed(0))
    assert sorted(set(probe.labels.tolist())) == [0, 1, 2] and len(probe) == 8
    (message,) = [str(w.message) for w in said]
    assert "OwnSize (40 items) come at several sizes" in message
    assert "one size (16x16, the commonest), which none of the images of class(es) 3 read" in (
        message
    )
    assert "the probes hold 3 of the 4 classes" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per dataset
        draw_probe(data, 8, torch.Generator().manual_seed(1))


class NestedItems(Dataset):
    """Items whose image sits one level down, as multi-modal pipelines keep them."""

    def __len__(self):
        return 30

    def __getitem__(self, i):
        return {"inputs": {"image": torch.full((1, 4, 4), float(i))}, "label": i % 3}


def test_probe_reads_an_image_one_level_down_in_a_dict_item():
    # setups hunt 25: 7 monitors "failed" with "cannot find the input tensor ... (its input
    # is a dict)"; the batch's input is found there too
    probe = draw_probe(NestedItems(), 6, torch.Generator().manual_seed(0))
    assert [int(x[0, 0, 0]) for x in probe.images] == probe.indices
    assert sorted(probe.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    batch = default_collate([NestedItems()[i] for i in range(4)])
    assert batch_inputs(batch).shape == (4, 1, 4, 4)


# an iterator: state no read can put back (a module's list its code holds is put back)
_SLOW_READS = itertools.count()


class Slow(Dataset):
    """An image-file-like dataset: 2 ms an item, no `targets`."""

    def __len__(self):
        return 5000

    def __getitem__(self, i):
        next(_SLOW_READS)
        time.sleep(0.002)
        return torch.full((1, 2, 2), float(i)), i % 4


def test_probe_labels_read_from_slow_items_stop_at_the_time_cap(monkeypatch):
    # setups hunt 25: ~2,000 items of each split read at 5 ms each to draw 16 probe images
    # (a 3 s fit took 27 s); without `targets` the reading now stops past LABEL_SECONDS
    from lightning_cnnviz.core import probe as probe_module

    monkeypatch.setattr(probe_module, "LABEL_SECONDS", 0.1)
    data = Slow()
    with pytest.warns(UserWarning, match="Give the dataset a `targets` attribute") as said:
        first = draw_probe(data, 16, torch.Generator().manual_seed(0))
        draw_probe(data, 16, torch.Generator().manual_seed(1))  # the cap holds per dataset
    assert len(said) == 1 and 16 <= next(_SLOW_READS) < 250  # 2048 before
    assert (
        len(first) == 16 and sorted(first.labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    )
