"""Validation data that is the training data: the pure check and short real runs."""

import pytest
import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Sampler,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    random_split,
)

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.overfitting.val_leak import COMPARED, same_items, shared_images
from tests.overfitting.runs import ItemsMapped, Net, fit_monitor, one_hot_set
from tests.tb import events, texts


def _flipped(data, i):
    """Item ``i`` flipped at random (a training augmentation)."""
    x, y = data[i]
    return (x.flip(-1) if torch.rand(()) < 0.5 else x), y


def test_val_leak_same_items_a_copy_not_a_split_nor_augmented():
    data = one_hot_set([40] * 4)
    copy = TensorDataset(*(t.clone() for t in data.tensors))
    assert same_items(data, copy) == COMPARED
    train, val = random_split(data, [120, 40], generator=torch.Generator().manual_seed(0))
    assert same_items(train, val) == 0
    assert same_items(data, one_hot_set([40] * 4, seed=1)) == 0  # other noise
    torch.manual_seed(0)
    assert (
        same_items(ItemsMapped(data, _flipped), copy) == 0
    )  # augmented at random: never read equal
    assert same_items(data, TensorDataset(*(t[:4] for t in data.tensors))) is None  # too few
    assert same_items(data, [object()] * 40) is None  # items that read as no image


def test_val_leak_a_val_set_too_small_to_compare_is_a_check_that_did_not_run(tmp_path):
    trainer, _ = fit(tmp_path, one_hot_set([1] * 4, seed=1))
    check = checks_of(trainer)[("OverfittingMonitor", "val data apart from training")]
    assert not check.ran and "needs 8 items in each set" in check.why
    assert not [f for f in findings_of(trainer) if f.kind == "val_is_train"]


def fit(tmp_path, val_set, train_set=None):
    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    train_set = train_set or one_hot_set([40] * 4)
    train = DataLoader(train_set, batch_size=16, shuffle=True)
    val = DataLoader(val_set if val_set is not None else train_set, batch_size=32)
    return fit_monitor(tmp_path, net, train, val, epochs=1)


def test_val_leak_told_before_the_first_step_for_the_training_set_or_its_copy(tmp_path):
    data = one_hot_set([40] * 4)
    copy = TensorDataset(*(t.clone() for t in data.tensors))
    for name, val_set, how in (("same", None, "reads the training set itself"),
                               ("copy", copy, "at the same positions (8 compared")):  # fmt: skip
        trainer, said = fit(tmp_path / name, val_set, data)
        (finding,) = [f for f in findings_of(trainer) if f.kind == "val_is_train"]
        assert (finding.severity, finding.step) == ("problem", 0)
        assert how in finding.message and any("The validation data are the" in m for m in said)
        (text,) = texts(events(tmp_path / name / "tb" / "version_0"), "overfitting/diagnosis")[:1]
        assert "The validation data are the training data" in text
    apart, _ = fit(tmp_path / "apart", one_hot_set([16] * 4, seed=1))
    assert not [f for f in findings_of(apart) if f.kind == "val_is_train"]
    assert checks_of(apart)[("OverfittingMonitor", "val data apart from training")].ran


def test_val_leak_quiet_on_one_set_split_by_samplers_and_probes_follow_them(tmp_path):
    # one dataset, a SubsetRandomSampler each: a train/val split by indices, no leak; each
    # probe is drawn from its own loader's items (the val probe held training items before)
    from torch.utils.data import SubsetRandomSampler

    data = one_hot_set([40] * 4)
    order = torch.randperm(160, generator=torch.Generator().manual_seed(0))
    train_at, val_at = order[:120].tolist(), order[120:].tolist()
    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    train = DataLoader(data, batch_size=16, sampler=SubsetRandomSampler(train_at))
    val = DataLoader(data, batch_size=32, sampler=SubsetRandomSampler(val_at))
    trainer, _ = fit_monitor(tmp_path, net, train, val, epochs=1)
    assert not [f for f in findings_of(trainer) if f.kind == "val_is_train"]
    monitor = trainer.callbacks[0]
    drawn = monitor.probe(trainer, "val")
    images = data.tensors[0][val_at]
    assert all(any(torch.equal(x, v) for v in images) for x in drawn.images)
    assert len(drawn) == 40  # all of the val split (num_samples=64)


@pytest.mark.parametrize("held", ["list", "tensor", "own_sampler"])
def test_val_leak_quiet_on_a_val_split_given_as_plain_indices(tmp_path, held):
    # setups hunt 26: `sampler=idx[512:]` (a list: DataLoader takes any iterable of
    # indices, the usual way to keep a val split in order) was read as the whole set, and
    # told as "the val loader reads the training set itself"
    from torch.utils.data import Sampler, SubsetRandomSampler

    class SubsetSequentialSampler(Sampler):
        def __init__(self, indices):
            self.indices = indices

        def __iter__(self):
            return iter(self.indices)

        def __len__(self):
            return len(self.indices)

    data = one_hot_set([40] * 4)
    order = torch.randperm(160, generator=torch.Generator().manual_seed(0))
    train_at, val_at = order[:120].tolist(), order[120:].tolist()
    sampler = {"list": val_at, "tensor": order[120:],
               "own_sampler": SubsetSequentialSampler(val_at)}[held]  # fmt: skip
    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    train = DataLoader(data, batch_size=16, sampler=SubsetRandomSampler(train_at))
    val = DataLoader(data, batch_size=32, sampler=sampler)
    trainer, _ = fit_monitor(tmp_path, net, train, val, epochs=1)
    assert not [f for f in findings_of(trainer) if f.kind == "val_is_train"]
    assert checks_of(trainer)[("OverfittingMonitor", "val data apart from training")].ran
    drawn = trainer.callbacks[0].probe(trainer, "val")
    images = data.tensors[0][val_at]
    assert len(drawn) == 40 and all(any(torch.equal(x, v) for v in images) for x in drawn.images)


class HeldIndices(Sampler):
    """A sampler of one's own holding its indices under a name nothing can know."""

    def __init__(self, idx):
        self.idx = idx

    def __iter__(self):
        return iter(self.idx)

    def __len__(self):
        return len(self.idx)


@pytest.mark.parametrize("how", ["batch_sampler", "weights", "own_name"])
def test_val_leak_quiet_on_a_split_by_batch_samplers_weights_or_unknown_samplers(tmp_path, how):
    # setups hunt 36: `batch_sampler=BatchSampler(SubsetRandomSampler(...))`, a
    # `WeightedRandomSampler` weighting the other split's items 0, or a sampler holding
    # `self.idx`: told "the val loader reads the training set itself"
    data = one_hot_set([40] * 4)
    order = torch.randperm(160, generator=torch.Generator().manual_seed(0))
    train_at, val_at = order[:120].tolist(), order[120:].tolist()
    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    if how == "batch_sampler":
        train = DataLoader(
            data, batch_sampler=BatchSampler(SubsetRandomSampler(train_at), 16, False)
        )
        val = DataLoader(data, batch_sampler=BatchSampler(val_at, 32, False))
    elif how == "weights":
        weights = torch.zeros(160).index_fill_(0, torch.tensor(train_at), 1.0)
        train = DataLoader(data, batch_size=16, sampler=WeightedRandomSampler(weights, 120))
        val = DataLoader(data, batch_size=32, sampler=SubsetRandomSampler(val_at))
    else:
        train = DataLoader(data, batch_size=16, sampler=HeldIndices(train_at))
        val = DataLoader(data, batch_size=32, sampler=HeldIndices(val_at))
    trainer, _ = fit_monitor(tmp_path, net, train, val, epochs=1)
    assert not [f for f in findings_of(trainer) if f.kind == "val_is_train"]
    check = checks_of(trainer)[("OverfittingMonitor", "val data apart from training")]
    if how == "own_name":  # which items each reads is not known: the check says it did not run
        assert not check.ran and "needs samplers whose indices it can read" in check.why
        return
    assert check.ran
    drawn = trainer.callbacks[0].probe(trainer, "val")
    images = data.tensors[0][val_at]
    assert all(any(torch.equal(x, v) for v in images) for x in drawn.images)


def test_val_leak_part_of_the_val_set_from_the_training_set_is_told_at_the_first_evaluation(
    tmp_path,
):
    # held out (hunt 22): 500 of 1000 val digits were training digits shuffled in (val 95.3%
    # against 91.4% on the fresh half), and nothing was said
    from torch.utils.data import ConcatDataset, Subset

    data = one_hot_set([40] * 4)
    fresh = one_hot_set([10] * 4, seed=1)
    mixed = ConcatDataset([Subset(data, range(0, 160, 4)), fresh])  # 40 training items of 80
    trainer, said = fit(tmp_path / "mixed", mixed, data)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "val_is_train"]
    assert finding.severity == "problem" and finding.step > 0  # the first evaluation
    assert "of the val probe's 64 images equal images of the train probe" in finding.message
    assert 0.3 <= finding.figures["leaked_share"] <= 0.7  # half the val set, estimated
    assert any("The validation data hold training images" in m for m in said)
    apart, _ = fit(tmp_path / "apart", fresh, data)
    assert not [f for f in findings_of(apart) if f.kind == "val_is_train"]


def test_val_leak_a_class_that_is_one_image_in_both_splits_is_no_leak():
    # hunt 107: a background class of one image in both splits was told "about 100% of the
    # val set are training items"; distinct training images in the val set still count
    g = torch.Generator().manual_seed(0)
    train, fresh = torch.rand(100, 1, 4, 4, generator=g), torch.rand(50, 1, 4, 4, generator=g)
    background = torch.full((30, 1, 4, 4), 0.5) + 0.1 * torch.eye(4)
    assert shared_images(torch.cat([train, background]), torch.cat([fresh, background[:10]])) == 0
    assert shared_images(torch.cat([train, background]), torch.cat([fresh, train[:5]])) == 5
