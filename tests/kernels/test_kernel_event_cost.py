"""KernelMonitor's event on the training thread: copies and scalars; drawing on the sink's."""

import threading

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lightning_cnnviz.core.selection import evenly_spaced
from lightning_cnnviz.kernels import dense, draw
from lightning_cnnviz.kernels.callback import KernelMonitor
from tests.kernels.kernel_nets import EdgeNet, read_images, run
from tests.tb import events, image_tags


class DeepNet(L.LightningModule):
    """Seven 3x3 convs in a row, as ``c0`` ... ``c6``."""

    def __init__(self) -> None:
        super().__init__()
        for i in range(7):
            self.add_module(f"c{i}", nn.Conv2d(1 if i == 0 else 2, 2, 3, padding=1))

    def forward(self, x):
        for i in range(7):
            x = torch.relu(getattr(self, f"c{i}")(x))
        return x.mean((2, 3))[:, :1].expand(-1, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_kernels_monitor_draws_an_evenly_spread_subset_of_layers(tmp_path):
    _, _, acc = run(tmp_path / "a", KernelMonitor(every_n_steps=3, max_drawn_layers=3), DeepNet())
    assert sorted(image_tags(acc)) == ["kernels/c0", "kernels/c3", "kernels/c6"]
    scalars = acc.Tags()["scalars"]
    assert all(f"kernels/c{i}/hf_energy" in scalars for i in range(7))  # every layer
    assert all(f"kernels/c{i}/relative_change" in scalars for i in range(7))
    _, _, acc = run(
        tmp_path / "b", KernelMonitor(every_n_steps=3, max_drawn_layers=None), DeepNet()
    )
    assert len(image_tags(acc)) == 7
    assert KernelMonitor().max_drawn_layers == 16
    assert evenly_spaced([f"c{i}" for i in range(53)], 16)[:3] == ["c0", "c3", "c7"]
    assert evenly_spaced(["a", "b", "c"], 1, single="first") == ["a"]
    with pytest.raises(ValueError, match=r"`max_drawn_layers`.*0"):
        KernelMonitor(max_drawn_layers=0)


def setup_monitor(tmp_path, model, **kwargs):
    trainer = L.Trainer(
        logger=TensorBoardLogger(tmp_path, name="tb"), enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    monitor = KernelMonitor(**kwargs)
    monitor.setup(trainer, model, "fit")
    return trainer, monitor


def test_kernels_images_are_drawn_on_the_sinks_thread_from_a_snapshot(tmp_path, monkeypatch):
    model = EdgeNet()
    trainer, monitor = setup_monitor(tmp_path, model, normalization="layer_symmetric")
    threads = []
    real = draw.render_kernels
    monkeypatch.setattr(
        draw,
        "render_kernels",
        lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k),
    )
    gate = threading.Event()
    monitor.sink.later(gate.wait)  # the sink's thread is busy until the gate opens
    monitor.log_event(trainer, model)
    assert not threads and monitor.timings["render"] > 0  # nothing drawn yet
    with torch.no_grad():
        model.conv1.weight.mul_(-1)  # the optimizer moves on before the picture is drawn
    gate.set()
    monitor.sink.flush()
    assert len(threads) == 2 and all(t is not threading.current_thread() for t in threads)
    img = read_images(events(tmp_path), "kernels/conv1")[0][1]
    before = draw.render_kernels(-model.conv1.weight.detach(), normalization="layer_symmetric")
    assert torch.equal(torch.tensor(img).permute(2, 0, 1), before)  # the weights at the event


def test_kernels_previous_buffer_reused_and_state_kept_apart(tmp_path):
    model = EdgeNet()
    trainer, monitor = setup_monitor(tmp_path, model)
    monitor.log_event(trainer, model)
    buffer = monitor._weights.copies["conv2"]
    state = monitor.state_dict()
    start = model.conv2.weight.detach().clone()
    with torch.no_grad():
        model.conv2.weight.add_(0.5)
    monitor.log_event(trainer, model)
    assert monitor._weights.copies["conv2"] is buffer  # updated in place
    assert torch.equal(buffer, model.conv2.weight.detach())
    assert torch.equal(state["extra"]["previous"]["conv2"], start)  # the saved state is a copy
    again = KernelMonitor()
    again.load_state_dict(state)
    assert again._weights.copies["conv2"] is not state["extra"]["previous"]["conv2"]
    monitor.sink.flush()
    change = events(tmp_path).Scalars("kernels/conv2/relative_change")
    expected = 0.5 * start.numel() ** 0.5 / torch.linalg.vector_norm(start)
    assert change[0].value == pytest.approx(float(expected), rel=1e-5)


def test_kernels_delta_and_linear_pictures_from_host_copies(tmp_path):
    model = EdgeNet(lr=0.0)
    trainer, monitor = setup_monitor(tmp_path, model, log_delta=True, linear=True, max_filters=1)
    monitor.log_event(trainer, model)
    with torch.no_grad():
        model.conv2.weight[1:].add_(1.0)  # filters past max_filters set the delta's scale
        model.conv2.weight[0].add_(0.5)
    pictures = monitor._pictures("conv2", model.conv2, model.conv2.weight.detach())
    delta = next(p for p in pictures if p.kind == "delta")
    assert delta.tensor.shape == (1, 2, 3, 3) and float(delta.scale) == pytest.approx(1.0)
    assert delta.tensor.device.type == "cpu" and torch.allclose(
        delta.tensor, torch.full_like(delta.tensor, 0.5)
    )
    heatmap = next(p for p in monitor._pictures("fc", model.fc, model.fc.weight.detach()))
    assert heatmap.kind == "heatmap" and heatmap.tensor.shape == model.fc.weight.shape
    drawn = model.fc.weight.detach().abs().flatten()  # small enough to be drawn unaveraged
    assert float(heatmap.scale) == pytest.approx(float(drawn.quantile(1 - dense.SATURATE)))


def test_kernels_change_of_a_weight_computed_on_access_is_left_out_saying_so(tmp_path):
    # setups hunt 47: a Bayes-by-backprop conv's weight is a new sample at each access: two
    # draws apart read as a change of 0.14 a log on a conv nothing moved
    from tests.core.test_model_state import SampledConv

    model = EdgeNet()
    model.conv1 = SampledConv()
    model.conv2 = nn.Conv2d(2, 4, 3, padding=1)
    trainer, monitor = setup_monitor(tmp_path, model)
    said = []
    monitor.warn_once = lambda key, text: said.append(text)
    for _ in range(2):
        monitor.log_event(trainer, model)
    monitor.sink.flush()
    written = events(tmp_path)
    assert "kernels/conv1/relative_change" not in written.Tags()["scalars"]
    assert [e.value for e in written.Scalars("kernels/conv2/relative_change")] == [0.0]
    assert len(said) == 2 and "leaves out `conv1`'s relative_change" in said[0]
    assert "computed anew at each access (a property" in said[0]
    assert "kernels/conv1" in image_tags(written)  # its samples are still drawn


def test_kernels_change_of_a_weight_set_in_forward_is_left_out_saying_what_it_is(tmp_path):
    # setups hunt 48: a weight assigned as a plain tensor (in `forward`) was told "a
    # property, as a Bayesian layer's sample"
    model = EdgeNet()
    base = model.conv1._parameters.pop("weight")
    model.conv1.base = base
    model.conv1.weight = base * 1.0  # a tensor computed from a parameter, not a leaf
    trainer, monitor = setup_monitor(tmp_path, model)
    said = []
    monitor.warn_once = lambda key, text: said.append(text)
    monitor.log_event(trainer, model)
    assert len(said) == 1 and "leaves out `conv1`'s relative_change" in said[0]
    assert "a tensor computed from others (set in `forward`)" in said[0]
    assert "property" not in said[0]
