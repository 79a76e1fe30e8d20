import random

import torch

from lightning_cnnviz.core.attribute_state import KEPT_NUMEL, attributes_kept


class DataModule:
    """A datamodule whose hook counts its calls, caches what it built and draws."""

    def __init__(self):
        self.calls = 0
        self.built = []
        self.rng = random.Random(0)
        self.weights = torch.zeros(3)
        self.table = torch.zeros(KEPT_NUMEL + 1, dtype=torch.bool)

    def val_dataloader(self):
        self.calls += 1
        self.built.append(self.rng.random())
        self.weights.add_(1.0)
        self.table[0] = True
        self.loader = object()
        return self.loader


def test_attributes_kept_puts_back_a_hook_called_out_of_order():
    data, twin = DataModule(), DataModule()
    with attributes_kept(data):
        data.val_dataloader()
        data.val_dataloader()
    assert data.calls == 0 and data.built == [] and not hasattr(data, "loader")
    assert torch.equal(data.weights, torch.zeros(3))
    data.val_dataloader()
    twin.val_dataloader()  # the run's own first call draws what it would have drawn
    assert data.built == twin.built
    assert bool(data.table[0])  # a tensor over the size limit is not copied, so stays written


def test_attributes_kept_leaves_objects_without_attributes_alone():
    numbers = (1, 2)
    with attributes_kept(numbers, None, 3):
        pass
    assert numbers == (1, 2)


class Sampler:
    """A helper of the user's holding its own generator."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.drawn = 0


def test_attributes_kept_puts_back_generators_in_containers_and_helper_objects():
    # setups hunt 55: noise drawn from a generator held in a list, a tuple or by a helper
    # object trained differently with the monitors' passes
    class Noisy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_list = [torch.Generator().manual_seed(1)]
            self.in_tuple = (torch.Generator().manual_seed(2),)
            self.helper = Sampler(3)

    net = Noisy()
    gens = [net.in_list[0], net.in_tuple[0], net.helper.g]
    states = [g.get_state() for g in gens]
    with attributes_kept(net):
        for g in gens:
            torch.randn(3, generator=g)
        net.helper.drawn += 1  # a helper's other attributes are its own
    assert all(torch.equal(g.get_state(), s) for g, s in zip(gens, states, strict=True))
    assert net.helper.drawn == 1
