import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.core.capture import LayerCapture, first_tensor, hook_count, tap_forward
from lightning_cnnviz.core.findings import checks_of
from lightning_cnnviz.core.layer_calls import count_call_sites
from lightning_cnnviz.core.probe_pass import probe_mode
from tests.monitors import ALL_MONITORS, TinyCNN, assert_every_monitor_wrote, fit, make_monitor


def test_capture_clones_before_inplace_activation():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    net = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(2, 1, 5, 5)
    with LayerCapture({"conv": conv}) as cap:
        out = net(x)
    assert (cap.outputs["conv"] < 0).any(), "the capture must keep the pre-ReLU values"
    assert torch.equal(cap.outputs["conv"].clamp(min=0), out)
    assert not cap.outputs["conv"].requires_grad


def test_capture_hooks_removed_after_exception():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    before = hook_count(net)
    with pytest.raises(RuntimeError), LayerCapture({"0": net[0], "1": net[1]}) as cap:
        assert sum(hook_count(net).values()) == 2
        raise RuntimeError("boom")
    assert hook_count(net) == before
    cap.remove()  # safe to call twice
    assert hook_count(net) == before


def test_capture_names_call_sites_of_shared_module():
    relu = nn.ReLU()
    net = nn.Sequential(nn.Linear(2, 3), relu, nn.Linear(3, 3), relu)
    x = torch.tensor([[1.0, -1.0]])
    assert count_call_sites(net, {"1": relu}, lambda: net(x)) == {"1": 2}
    with LayerCapture({"1": relu}, shared={"1"}) as cap:
        net(x)
    assert sorted(cap.outputs) == ["1#0", "1#1"]
    assert cap.outputs["1#0"].shape == (1, 3)


def test_capture_inputs_and_float32_under_bf16():
    lin = nn.Linear(2, 2).to(torch.bfloat16)
    with LayerCapture({"lin": lin}, inputs=True) as cap:
        lin(torch.ones(1, 2, dtype=torch.bfloat16))
    assert cap.outputs["lin"].dtype == torch.float32
    assert torch.equal(cap.inputs["lin"], torch.ones(1, 2))


def test_capture_on_output_receives_instead_of_keeping():
    lin = nn.Linear(2, 2)
    seen = []
    with LayerCapture({"lin": lin}, on_output=lambda site, t: seen.append((site, t.shape))):
        lin(torch.ones(3, 2))
    assert seen == [("lin", torch.Size([3, 2]))]


def test_probe_mode_restores_flags_and_leaves_inference_mode():
    net = nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2), nn.Linear(2, 2))
    net[2].eval()  # a user's frozen submodule stays as it was
    with torch.inference_mode(), probe_mode(net, grad=True):
        assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
        assert not any(m.training for m in net.modules())
        y = net(torch.ones(3, 2, requires_grad=True))
        assert y.requires_grad
    assert [m.training for m in net.modules()] == [True, True, True, False]
    with pytest.raises(ValueError), probe_mode(net):
        raise ValueError
    assert [m.training for m in net.modules()] == [True, True, True, False]


def test_probe_mode_turns_autocast_off():
    lin = nn.Linear(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lin(torch.ones(1, 4)).dtype == torch.bfloat16
        with probe_mode(lin):
            assert lin(torch.ones(1, 4)).dtype == torch.float32


def test_first_tensor_finds_logits_in_containers():
    from collections import namedtuple

    Out = namedtuple("Out", ["logits", "aux"])
    t = torch.ones(2)
    assert first_tensor(Out(t, None)) is t
    assert first_tensor(Out(None, t), "aux") is t
    assert first_tensor([{"a": t}]) is t
    with pytest.raises(TypeError):
        first_tensor("text")


def test_capture_probe_pass_of_a_forward_that_logs_logs_nothing(tmp_path):
    # held out (setups hunt 18): `self.log` in `forward` made FeatureMap and GradCAM fail at
    # setup ("You can't `self.log()` inside `setup`"), where their probe pass traces the model
    from tests.monitors import ALL_MONITORS, TinyCNN, failures, fit, make_monitor

    class Logs(TinyCNN):
        def forward(self, x):
            out = super().forward(x)
            self.log("logit_mean", out.mean())
            return out

    monitors = [make_monitor(name) for name in ALL_MONITORS]
    trainer, model, messages = fit(tmp_path, monitors, model=Logs())
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name) and monitor.events > 0, name
    assert "log" not in vars(model) and "log_dict" not in vars(model)  # put back
    assert "logit_mean" in trainer.callback_metrics  # the run's own forward still logs


def test_capture_skips_passes_under_torch_func_transforms():
    net = nn.Sequential(nn.Linear(2, 3))
    tapped = []
    handle = tap_forward(net[0], lambda args, out: tapped.append(out.shape))
    try:
        with LayerCapture({"0": net[0]}) as cap:
            torch.func.vmap(net)(torch.ones(5, 2))  # per-sample: wrapped tensors, no values
            assert cap.call_counts == {} and tapped == []
            net(torch.ones(4, 2))
        assert cap.call_counts == {"0": 1} and cap.outputs["0"].shape == (4, 3)
        assert tapped == [(4, 3)]
    finally:
        handle.remove()


class PerSampleGrads(TinyCNN):
    """DP-SGD-like manual optimisation: per-sample gradients under ``torch.func.vmap``."""

    def __init__(self) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.Identity(), nn.Identity()  # per-sample BatchNorm has no batch
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        params = {k: v.detach() for k, v in self.named_parameters()}

        def loss_of(p, xi, yi):
            return F.cross_entropy(torch.func.functional_call(self, p, (xi[None],)), yi[None])

        grads = torch.func.vmap(torch.func.grad(loss_of), in_dims=(None, 0, 0))(params, x, y)
        opt = self.optimizers()
        opt.zero_grad()
        for k, p in self.named_parameters():
            p.grad = grads[k].mean(0)
        opt.step()
        with torch.no_grad():
            logits = self(x)
        self.log("train/loss", F.cross_entropy(logits, y))
        self.log("train/acc", (logits.argmax(1) == y).float().mean())


def test_capture_per_sample_gradients_under_vmap_leave_every_monitor_working(tmp_path):
    # setups hunt 19: the per-sample passes reached the training-pass taps, and Activation
    # ("vmap: ... .item()") and Overfitting ("Cannot access data pointer") stepped aside
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    trainer, _, messages = fit(tmp_path, monitors, model=PerSampleGrads())
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    check = checks_of(trainer)[("ActivationMonitor", "divergence")]
    assert not check.ran and "no `manual_backward` ran" in check.why
