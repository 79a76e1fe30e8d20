"""The package's hooks on user modules: copies of them keep none."""

import copy

import torch
from torch import nn

from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.own_hooks import drop_copied_hooks, own_hook


def test_own_hooks_a_copy_of_a_copy_is_dropped_and_scripts():
    # setups hunt 43: `AveragedModel(deepcopy(self.net))` in a step kept two stand-ins
    # (a stand-in copied made one `drop_copied_hooks` never saw): `torch.jit.script` failed
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    handle = net[0].register_forward_hook(own_hook(lambda m, a, o: None))
    teacher = copy.deepcopy(net)
    average = copy.deepcopy(teacher)
    assert sum(hook_count(average).values()) == 1  # until the batch ends
    drop_copied_hooks()
    assert [sum(hook_count(m).values()) for m in (teacher, average, net)] == [0, 0, 1]
    torch.jit.script(average)
    handle.remove()


def test_own_hooks_a_copy_a_validation_step_makes_is_dropped(tmp_path):
    # setups hunt 43: a snapshot taken in the only validation of a one-epoch fit kept a
    # stand-in (dropped at training batch ends only): `torch.jit.script` of it failed
    from lightning_cnnviz import presets
    from tests.monitors import TinyCNN, fit, loaders

    class Snapshots(TinyCNN):
        snapshots: list[nn.Module] = []

        def validation_step(self, batch, batch_idx):
            self.snapshots.append(copy.deepcopy(nn.Sequential(self.conv1, self.bn1)))
            return super().validation_step(batch, batch_idx)

    model = Snapshots()
    fit(tmp_path, presets.callbacks("standard"), model=model, data=loaders(), max_epochs=1)
    assert model.snapshots
    for snapshot in model.snapshots:
        assert sum(hook_count(snapshot).values()) == 0
        torch.jit.script(snapshot)


def test_own_hooks_a_copy_dropped_at_once_is_freed_at_once():
    # setups hunt 44: eight copies of a 100 MB model a step, each dropped at once, stayed
    # alive to the batch's end (their deepcopy memo was kept): +0.9 GB
    import gc
    import weakref

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    handle = net[0].register_forward_hook(own_hook(lambda m, a, o: None))
    gone = weakref.ref(copy.deepcopy(net))
    gc.collect()
    assert gone() is None
    drop_copied_hooks()  # nothing left to drop, and nothing fails
    handle.remove()


class OwnCopy(nn.Conv2d):
    """A layer whose ``__deepcopy__`` copies each attribute with a fresh memo."""

    def __deepcopy__(self, memo):
        twin = type(self).__new__(type(self))
        twin.__dict__.update({k: copy.deepcopy(v) for k, v in self.__dict__.items()})
        return twin


def test_own_hooks_a_copy_a_module_makes_itself_is_dropped():
    # setups hunt 44: layers with a `__deepcopy__` of their own copied the package's hook
    # with no module copy in the memo: the teacher kept two stand-ins, `jit.script` failed
    net = nn.Sequential(OwnCopy(1, 2, 3), nn.ReLU())
    handle = net[0].register_forward_hook(own_hook(lambda m, a, o: None))
    teacher = copy.deepcopy(net)
    drop_copied_hooks()
    assert sum(hook_count(teacher).values()) == 0
    torch.jit.script(teacher)
    handle.remove()
