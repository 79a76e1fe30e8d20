"""Training batches in class order: the pure check and a short real run."""

import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.overfitting.train_order import class_runs
from tests.overfitting.runs import Net, fit_monitor, one_hot_set


def test_train_order_class_runs_sorted_not_random_nor_imbalanced():
    assert class_runs(torch.arange(4).repeat_interleave(40))["same_class_share"] > 0.9
    shuffled = torch.arange(4).repeat_interleave(40)[torch.randperm(160)]
    assert class_runs(shuffled) == {}
    mostly_one = torch.tensor([0] * 95 + [1] * 5)[torch.randperm(100)]  # 90% expected
    assert class_runs(mostly_one) == {}  # imbalanced, not sorted


def fit(tmp_path, shuffle):
    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    train = DataLoader(one_hot_set([40] * 4), batch_size=16, shuffle=shuffle)  # class-sorted
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    return fit_monitor(tmp_path, net, train, val, epochs=1)


def test_train_order_told_before_the_first_step_when_not_shuffled(tmp_path):
    trainer, said = fit(tmp_path, shuffle=False)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "unshuffled_batches"]
    assert (finding.severity, finding.step) == ("problem", 0)
    assert finding.figures["same_class_share"] > 0.95
    assert any("Pass `shuffle=True`" in m for m in said)
    assert checks_of(trainer)[("OverfittingMonitor", "training order")].ran
    shuffled, _ = fit(tmp_path / "shuffled", shuffle=True)
    assert not [f for f in findings_of(shuffled) if f.kind == "unshuffled_batches"]


def test_train_order_quiet_for_a_batch_sampler_over_a_random_sampler(tmp_path):
    # hunt 40: a class-sorted set (as ImageFolder stores it) read by
    # `BatchSampler(RandomSampler(...))` was told unshuffled: the loader's `sampler` is
    # then a default sequential one
    from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    data = one_hot_set([40] * 4)
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    for sampler, told in ((RandomSampler(data), False), (SequentialSampler(data), True)):
        train = DataLoader(data, batch_sampler=BatchSampler(sampler, 16, drop_last=False))
        trainer, _ = fit_monitor(tmp_path / str(told), net, train, val, epochs=1)
        kinds = [f.kind for f in findings_of(trainer)]
        assert ("unshuffled_batches" in kinds) is told


class InOrder(torch.utils.data.Sampler):
    """A sampler of one's own handing the items in order: its order is not readable."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(range(self.n))


def test_train_order_read_through_index_lists_and_said_not_run_for_own_samplers(tmp_path):
    # setups hunt 41: `sampler=list(range(n))` and an unshuffled `DistributedSampler` on a
    # class-sorted set were not told, an own in-order sampler not either, all "ran"
    from torch.utils.data import DistributedSampler

    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    data = one_hot_set([40] * 4)
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    unshuffled = DistributedSampler(data, num_replicas=1, rank=0, shuffle=False)
    for name, sampler in (("list", list(range(160))), ("distributed", unshuffled)):
        train = DataLoader(data, batch_size=16, sampler=sampler)
        trainer, _ = fit_monitor(tmp_path / name, net, train, val, epochs=1)
        assert "unshuffled_batches" in [f.kind for f in findings_of(trainer)], name
    train = DataLoader(data, batch_size=16, sampler=InOrder(160))
    trainer, _ = fit_monitor(tmp_path / "own", net, train, val, epochs=1)
    check = checks_of(trainer)[("OverfittingMonitor", "training order")]
    assert not check.ran and "cannot read the order its `InOrder` draws" in check.why


def test_train_order_read_in_the_order_a_list_of_indices_gives(tmp_path):
    # a list sampler reading a shuffled set class by class, whole or in part, was read in
    # its order twice over (the loader's view of the set already holds the list's order)
    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    x, y = one_hot_set([40] * 4).tensors
    mixed = torch.randperm(160, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x[mixed], y[mixed])
    by_class = torch.argsort(y[mixed], stable=True).tolist()
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    for name, sampler in (("whole", by_class), ("part", by_class[:120])):
        train = DataLoader(data, batch_size=16, sampler=sampler)
        trainer, _ = fit_monitor(tmp_path / name, net, train, val, epochs=1)
        (found,) = [f for f in findings_of(trainer) if f.kind == "unshuffled_batches"]
        assert found.figures["same_class_share"] > 0.9, name


def test_train_order_named_by_a_problem_told_after_it(tmp_path):
    # a model that learns nothing (rate 0) on class-sorted batches: at chance at the 2nd
    # validation, "not learning" says that it may follow from the order told at step 0
    head = nn.Linear(16, 4)
    nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)  # logits 0: at chance
    net = Net(nn.Sequential(nn.Flatten(), head), lr=0.0)
    train = DataLoader(one_hot_set([40] * 4), batch_size=16, shuffle=False)
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    trainer, said = fit_monitor(tmp_path, net, train, val, epochs=3)
    (stuck,) = [f for f in findings_of(trainer) if f.kind == "not_learning"]
    cause = "This may follow from a problem reported first (step 0, `unshuffled_batches`)"
    assert stuck.severity == "problem" and cause in stuck.message
    assert any(m.startswith("Not learning") and cause in m for m in said)
