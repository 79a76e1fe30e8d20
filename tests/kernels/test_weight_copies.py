"""What KernelMonitor keeps of frozen weights: no copy beyond a bound, changes still read."""

import lightning as L
import torch

import lightning_cnnviz.kernels.weight_copies as weight_copies
from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.kernels.callback import KernelMonitor
from lightning_cnnviz.kernels.untrained import neighbour_correlation
from tests.kernels.kernel_nets import EdgeNet, run


class AveragedConv1(EdgeNet):
    """``conv1`` frozen and pulled towards ``conv2``'s mean in place after every step (an EMA)."""

    def on_train_batch_end(self, outputs, batch, batch_idx):
        with torch.no_grad():
            self.conv1.weight.mul_(0.9).add_(0.1 * self.conv2.weight.mean())


def test_weight_copies_a_frozen_layer_past_the_bound_is_followed_without_a_copy(
    tmp_path, monkeypatch
):
    # setups hunt 55: a 288 MB frozen backbone, KernelMonitor alone +1.2 GB of peak memory
    monkeypatch.setattr(weight_copies, "FROZEN_KEPT", 0)
    model = EdgeNet(lr=0.05)
    model.conv1.weight.requires_grad_(False)
    monitor = KernelMonitor(every_n_steps=2)
    _, _, acc = run(tmp_path / "frozen", monitor, model, steps=8)
    assert [e.value for e in acc.Scalars("kernels/conv1/relative_change")] == [0.0, 0.0, 0.0]
    assert all(e.value > 0 for e in acc.Scalars("kernels/conv2/relative_change"))
    assert set(monitor._weights.copies) == {"conv2"}  # none of the frozen layer's
    # a frozen weight written in place (an average's copy) is seen moving, then measured
    model = AveragedConv1(lr=0.05)
    model.conv1.weight.requires_grad_(False)
    monitor = KernelMonitor(every_n_steps=2)
    _, _, acc = run(tmp_path / "averaged", monitor, model, steps=8)
    changes = [e.value for e in acc.Scalars("kernels/conv1/relative_change")]
    assert len(changes) == 2 and all(c > 0.05 for c in changes)  # from the third event on
    assert "conv1" in monitor._weights.moving and "conv1" in monitor._weights.copies


def test_weight_copies_neighbour_correlation_reads_a_bounded_sample(monkeypatch):
    # a 2048x2048 conv read whole made copies of eight times its 144 MB
    import lightning_cnnviz.kernels.untrained as untrained

    L.seed_everything(0)
    smooth = torch.arange(9.0).reshape(3, 3).expand(64, 32, 3, 3) + 0.1 * torch.randn(64, 32, 3, 3)
    r, pairs = neighbour_correlation(smooth)
    monkeypatch.setattr(untrained, "MAX_SLICES", 256)
    r_sample, pairs_sample = neighbour_correlation(smooth)
    assert pairs == 64 * 32 * 12 and pairs_sample == 256 * 12
    assert abs(r - r_sample) < 0.01 and r > 0.85


class DataAveragedConv1(EdgeNet):
    """``conv1`` frozen and pulled towards ``conv2``'s mean through ``.data`` (a mean teacher)."""

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.conv1.weight.data.mul_(0.9).add_(0.1 * self.conv2.weight.data.mean())


def test_weight_copies_a_frozen_layer_written_through_data_is_measured(tmp_path):
    # setups hunt 75: a mean teacher's `.data` writes move no version counter; its 22% read
    # as 0 and "Frozen layers ... have not changed at all ... look untrained"
    model = DataAveragedConv1(lr=0.05)
    model.conv1.weight.requires_grad_(False)
    _, trainer, acc = run(tmp_path, KernelMonitor(every_n_steps=2), model, steps=8)
    changes = [e.value for e in acc.Scalars("kernels/conv1/relative_change")]
    assert len(changes) == 3 and all(c > 0.05 for c in changes)
    assert [f for f in findings_of(trainer) if f.kind == "frozen_layers"] == []


def test_weight_copies_neighbour_correlation_samples_past_2_to_the_24_kernels():
    # setups hunt 75: float32 indices rounded past the end ("index out of range") for a
    # frozen conv of 4608x4608 kernels, and KernelMonitor stepped aside for the run
    weight = torch.arange(2.0).expand(5000, 4097, 1, 2)  # 1.2 x 2**24 kernels
    r, pairs = neighbour_correlation(weight)
    assert pairs == 1 << 14 and r == 0.0  # every kernel (0, 1): one neighbour pair, no spread
    assert neighbour_correlation(torch.zeros(5000, 4097, 1, 1)) is None  # 1x1: no neighbours
