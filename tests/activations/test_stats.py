import math
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.activations.dead import DeadHistory, dead_alerts, strip_append, strip_column
from lightning_cnnviz.activations.dead_words import diagnosis_text
from lightning_cnnviz.activations.grad_reads import weight_grad_norm
from lightning_cnnviz.activations.recorder import Recorder
from lightning_cnnviz.activations.reductions import _exact_counts, _finite_parts, batch_parts, fold
from lightning_cnnviz.activations.sites import fallback_layers, trace_sites
from lightning_cnnviz.activations.stats import (
    ActivationStats,
    batch_stats,
    compute_stats,
    dormant_mask,
    merge,
    new_state,
    output_bounds,
    to_host,
)
from lightning_cnnviz.core.schedule import Schedule, batches_to_log


def test_stats_hand_computed_conv_channels():
    # (N=2, C=3, 1x2): channel 0 active once, channel 1 never (negative/zero), channel 2 always.
    x = torch.tensor(
        [
            [[[1.0, 0.0]], [[-1.0, 0.0]], [[2.0, 2.0]]],
            [[[0.0, 0.0]], [[-3.0, 0.0]], [[4.0, 2.0]]],
        ]
    )
    stats = ActivationStats(3)
    stats.update(x[:1])
    stats.update(x[1:])  # two batches accumulate like one
    out = stats.compute(tau=0.025)
    assert out["dead"].tolist() == [False, True, False]
    assert out["active_share"].tolist() == [0.25, 0.0, 1.0]
    assert float(out["dead_fraction"]) == pytest.approx(1 / 3)
    assert float(out["zero_fraction"]) == pytest.approx(5 / 12)
    assert float(out["mean"]) == pytest.approx(7 / 12)
    assert float(out["std"]) == pytest.approx(math.sqrt(39 / 12 - (7 / 12) ** 2), rel=1e-6)
    assert float(out["max_abs"]) == 4.0
    assert float(out["nonfinite"]) == 0.0
    # channel means |a|: 0.25, 1.0, 2.5; layer mean 1.25; none below 0.025 * 1.25
    assert out["dormant"].tolist() == [False, False, False]
    assert float(out["count"]) == 4.0


def test_stats_symmetric_and_saturation_for_tanh():
    x = torch.tensor([[0.995, 0.0], [-0.999, 0.0], [0.5, 0.0]])
    bounds = output_bounds(nn.Tanh())
    out = compute_stats(_merged(x, channel_dim=1, mode="magnitude", bounds=bounds), tau=0.025)
    assert out["dead"].tolist() == [False, True]  # |a| > 0 counts for Tanh
    assert float(out["saturation"]) == pytest.approx(2 / 6)  # |a| >= 0.99 of the range
    sig = compute_stats(_merged(torch.tensor([[0.001, 0.5, 0.999]]), bounds=(0.0, 1.0)), 0.025)
    assert float(sig["saturation"]) == pytest.approx(2 / 3)
    assert output_bounds(nn.Sigmoid()) == (0.0, 1.0) and output_bounds(nn.ReLU6()) is None


def test_stats_preactivation_dormancy_reads_the_positive_part():
    x = torch.tensor([[-100.0, 2.0, 0.01], [-50.0, 4.0, 0.0]])
    out = compute_stats(_merged(x, mode="preactivation"), tau=0.025)
    assert out["dead"].tolist() == [True, False, False]
    assert out["dormant"].tolist() == [True, False, True]  # 0.005 < 0.025 * 1.0025
    assert float(out["zero_fraction"]) == pytest.approx(3 / 6)  # what a ReLU would zero
    assert float(out["max_abs"]) == 100.0
    raw = compute_stats(_merged(x), tau=0.025)  # read as an activation: |a| is large
    assert raw["dormant"].tolist() == [False, False, True]


def _merged(x, **kwargs):
    batch = batch_stats(x, **kwargs)
    state = new_state(batch["active"].numel())
    merge(state, batch)
    return state


def test_stats_channel_last_for_linear_on_sequences():
    x = torch.zeros(2, 5, 4)
    x[..., 1] = 1.0
    out = compute_stats(_merged(x, channel_dim=-1), tau=0.025)
    assert out["dead"].tolist() == [True, False, True, True]
    assert float(out["count"]) == 10.0


def test_stats_dormant_mask_and_all_zero_layer():
    assert dormant_mask(torch.tensor([100.0, 0.5, 0.0]), torch.tensor(1.0), 0.025).tolist() == [
        False,
        True,
        True,
    ]
    assert dormant_mask(torch.zeros(3), torch.tensor(4.0), 0.025).tolist() == [True] * 3


def test_stats_nonfinite_counted_not_active():
    x = torch.tensor([[float("nan"), 1.0], [float("inf"), -1.0]])
    out = compute_stats(_merged(x), tau=0.025)
    assert float(out["nonfinite"]) == 2.0
    assert out["dead"].tolist() == [False, False]  # +inf > 0 is active, NaN is not


@pytest.mark.parametrize("mode", ["positive", "magnitude", "preactivation"])
@pytest.mark.parametrize("eps", [0.0, 0.3])
@pytest.mark.parametrize("signed", [False, True])
def test_stats_finite_fast_path_matches_the_exact_masks(mode, eps, signed, monkeypatch):
    monkeypatch.setattr(
        "lightning_cnnviz.activations.reductions._SLICE_ENTRIES", 1000
    )  # slices of 3 samples
    generator = torch.Generator().manual_seed(int(eps * 10) + 2 * signed)
    x = torch.randn(8, 6, 50, generator=generator)
    x = x if signed else x.relu()
    x[:, 2] = 0.0  # a dead channel
    x[0, 3, :5] = eps  # entries exactly at the threshold are not active
    exact = _exact_counts(x, eps, mode)
    hints = [False, True] if not signed else [False]  # a ReLU's output: no minimum taken
    for nonnegative in hints:
        parts = _finite_parts(x, eps, mode, nonnegative)
        assert len(parts["sumsq"]) == 3  # 3 + 3 + 2 samples
        fast = fold(parts)
        assert fast.keys() - {"sumsq"} == exact.keys() - {"nonfinite"}
        for key in ("active", "nonzero", "max_abs"):
            assert fast[key].tolist() == exact[key].double().tolist(), key
        torch.testing.assert_close(fast["abs_sum"].float(), exact["abs_sum"])  # float32 sums
        torch.testing.assert_close(fast["sum"].float(), exact["sum"])
        assert fast["active"][2] == 0 and fast["active"].max() > 0


def test_stats_complex_outputs_are_read_as_magnitudes():
    # setups hunt 48: a Tanh fed complex values logged the real part's mean (0.02 where
    # the magnitudes' is 0.79), with torch's cast warning from the package
    z = torch.randn(4, 3, 5, dtype=torch.cfloat, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = fold(batch_parts(z, mode="magnitude"))
    expected = fold(batch_parts(z.abs(), mode="magnitude"))
    for key in expected:
        torch.testing.assert_close(read[key], expected[key], msg=key)
    assert float(read["sum"].sum()) == pytest.approx(float(z.abs().sum()), rel=1e-5)


def test_stats_fold_adds_many_batches_like_one():
    batches = [torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    batches[2] = batches[2].relu()
    batches[3][0, 0, 0] = float("nan")  # an exact-path batch among float-path ones
    parts = {}
    for batch in batches:
        for key, values in batch_parts(batch).items():
            parts.setdefault(key, []).extend(values)
    whole = batch_stats(torch.cat(batches))
    folded = fold(parts)
    assert folded.keys() == whole.keys()
    for key in whole:
        torch.testing.assert_close(folded[key], whole[key], equal_nan=True, msg=key)
    assert float(folded["count"]) == 4 * 5 * 7 and float(folded["nonfinite"]) == 1.0


def test_stats_activation_stats_folds_pending_batches_when_read():
    stats, whole = ActivationStats(channels=3), ActivationStats(channels=3)
    batches = [torch.randn(4, 3, generator=torch.Generator().manual_seed(i)) for i in range(40)]
    for batch in batches:
        stats.update(batch)
    assert 0 < stats._pending < 32  # 32 were added in on the way, the rest wait
    whole.update(torch.cat(batches))
    for key, value in whole.state.items():
        torch.testing.assert_close(stats.state[key], value, msg=key)
    assert stats._pending == 0 and float(stats.state["count"]) == 160
    stats.reset()
    assert float(stats.state["count"]) == 0 and not stats._parts
    stats.reset()  # made again from the next batches alone, with every key of a state
    stats.update(batches[0])
    stats.update(batches[1])
    assert stats.state.keys() == new_state(3).keys()
    fresh = batch_stats(torch.cat(batches[:2]))
    for key, value in fresh.items():
        torch.testing.assert_close(stats.state[key], value, msg=key)


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_stats_nonnegative_hint_gives_the_same_figures(eps):
    x = torch.randn(4, 5, 6, 6, generator=torch.Generator().manual_seed(1)).relu()
    x[:, 1] = 0.0
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")  # the hint must not hide it: the exact path counts it
    for batch in (x, nan):
        plain = batch_stats(batch, eps=eps)
        hinted = batch_stats(batch, eps=eps, nonnegative=True)
        for key in plain:
            torch.testing.assert_close(hinted[key], plain[key], equal_nan=True, msg=key)
    assert float(batch_stats(nan, nonnegative=True)["nonfinite"]) == 1.0


def test_stats_to_host_keeps_shapes_and_values():
    tensors = {
        "mask": torch.tensor([True, False, True]),
        "m": torch.ones(2, 2),
        "s": torch.tensor(3),
    }
    host = to_host(tensors)
    assert host["mask"].tolist() == [1.0, 0.0, 1.0]
    assert host["m"].shape == (2, 2) and float(host["s"]) == 3.0
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in host.values())


def test_stats_strip_columns_grouped_and_history_bounded():
    share = torch.zeros(600)
    share[:300] = 1.0
    column = strip_column(share, max_rows=256)
    assert column.shape == (200,) and column.dtype == torch.uint8  # groups of 3 channels
    assert column[:100].tolist() == [255] * 100 and column[100:].tolist() == [0] * 100
    odd = torch.tensor([float("nan"), float("inf"), -1.0, 1e-6, 0.5, 2.0, 0.2])
    assert strip_column(odd).tolist() == [0, 255, 0, 1, 128, 255, 51]  # only dead is 0
    history = None
    for i in range(10):
        history = strip_append(history, torch.full((4,), i, dtype=torch.uint8), max_columns=6)
    assert history.shape == (4, 6) and history[0].tolist() == [4, 5, 6, 7, 8, 9]
    assert strip_append(history, torch.zeros(5, dtype=torch.uint8)).shape == (5, 1)


def _simulate(num_batches, epochs, accumulate, every_n_steps):
    """Lightning's stepping: a step every `accumulate` batches and at the end of each epoch.

    Returns (global_step at batch start, batch_idx, batches until the batch completing
    the next logging step, this one included) for every batch.
    """
    rows, step = [], 0
    for _ in range(epochs):
        for b in range(num_batches):
            stepped = (b + 1) % accumulate == 0 or b == num_batches - 1
            rows.append([step, b, stepped])
            step += stepped
    out = []
    for i, (g, b, _) in enumerate(rows):
        steps, k = g, i
        while True:
            steps += rows[k][2]
            if rows[k][2] and steps % every_n_steps == 0:
                break
            k += 1
            if k == len(rows):
                k = None
                break
        out.append((g, b, None if k is None else k - i + 1))
    return out


def _next(global_step, every_n_steps):
    return Schedule(every_n_steps=every_n_steps).next_step(global_step)


@pytest.mark.parametrize(
    ("num_batches", "accumulate", "every_n_steps"), [(12, 1, 5), (12, 2, 3), (12, 3, 2), (16, 4, 1)]
)
def test_stats_batches_to_log_matches_lightning_stepping(num_batches, accumulate, every_n_steps):
    for g, b, truth in _simulate(num_batches, 3, accumulate, every_n_steps):
        ahead = batches_to_log(g, b, accumulate, num_batches, _next(g, every_n_steps))
        if truth is not None:
            assert ahead[0] == truth, (g, b)


def test_stats_batches_to_log_across_a_short_epoch_is_an_upper_bound():
    # 7 batches per epoch with accumulate=2: the last batch of an epoch steps alone.
    for g, b, truth in _simulate(7, 3, 2, 3):
        ahead = batches_to_log(g, b, 2, 7, _next(g, 3))
        if truth is not None:
            assert ahead[0] >= truth, (g, b)


def test_stats_batches_to_log_epoch_schedule():
    assert batches_to_log(0, 5, 1, 8, None, epoch_due=True) == (3, 0)
    assert batches_to_log(0, 7, 1, 8, None, epoch_due=True) == (1, 1)
    assert batches_to_log(0, 7, 1, 8, None, epoch_due=False) is None
    assert batches_to_log(0, 7, 1, float("inf"), None, epoch_due=True) is None


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(3, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x))).mean((2, 3))
        return self.head(F.relu(self.act(self.fc(x))))


class _SqueezeExcite(nn.Module):
    """A conv whose channels a squeeze-excite gate weighs (as timm's and torchvision's)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()
        self.reduce, self.se_act, self.expand = nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 1)

    def forward(self, x):
        x = self.act(self.conv(x))
        gate = self.expand(self.se_act(self.reduce(x.mean((2, 3), keepdim=True)))).sigmoid()
        return (x * gate).mean((2, 3))


def test_stats_trace_sites_a_squeeze_excite_bottleneck_is_squeezed():
    net = _SqueezeExcite()
    selected = {"act": net.act, "se_act": net.se_act}
    _, sites = trace_sites(net, selected, lambda: net(torch.zeros(2, 1, 5, 5)))
    assert {s: i.squeezed for s, i in sites.items()} == {"act": False, "se_act": True}


def test_stats_trace_sites_producers_and_call_sites():
    net = _Functional()
    selected = {"act": net.act, "fc": net.fc}
    counts, sites = trace_sites(net, selected, lambda: net(torch.zeros(2, 1, 5, 5)))
    assert counts == {"act": 2, "fc": 1}
    assert {s: (i.producer, i.channel_dim, i.channels) for s, i in sites.items()} == {
        "act#0": ("conv", 1, 3),  # BatchNorm (1-D weight) is not the producer
        "fc": ("fc", -1, 5),
        "act#1": ("fc", -1, 5),
    }
    # a ReLU's output is known to be >= 0 (no minimum taken); a linear layer's is not
    assert {s: i.nonnegative for s, i in sites.items()} == {
        "act#0": True,
        "fc": False,
        "act#1": True,
    }
    assert net.training and all(not m._forward_hooks for m in net.modules())


def test_stats_fallback_layers_skip_output_layer_and_conv_before_bn():
    net = _Functional()
    assert fallback_layers(dict(net.named_children())) == ["bn", "fc"]


def test_stats_weight_grad_norm_reads_only():
    lin = nn.Linear(2, 2)
    assert weight_grad_norm(lin) is None
    lin(torch.ones(1, 2)).sum().backward()
    before = [p.grad.clone() for p in lin.parameters()]
    expected = torch.cat([p.grad.flatten() for p in lin.parameters()]).norm()
    assert torch.allclose(weight_grad_norm(lin), expected)
    assert all(torch.equal(p.grad, b) for p, b in zip(lin.parameters(), before, strict=True))


def test_stats_gradient_sizes_of_a_complex_layer_are_of_magnitudes():
    # setups hunt 46: a cast to float kept the real part (torch warned from the package);
    # a gradient all imaginary was logged as 0
    conv = nn.Conv2d(1, 1, 2, bias=False, dtype=torch.cfloat)
    conv.weight.grad = 1j * torch.ones_like(conv.weight)
    rec = Recorder()
    rec.depth = ["conv"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norm = weight_grad_norm(conv)
        rec.read_grads(nn.Sequential(OrderedDict(conv=conv)))
    assert float(norm) == pytest.approx(2.0)  # four entries of magnitude 1
    assert float(rec.grads.rms["conv"]) == pytest.approx(1.0)


def test_stats_weight_norms_and_biases_of_a_complex_layer():
    # setups hunt 47: the norm kept at each log was the real part's (and torch warned)
    from lightning_cnnviz.activations.init_weights import negative_biases
    from lightning_cnnviz.activations.rewrites import weight_norms

    conv = nn.Conv2d(1, 1, 2, dtype=torch.cfloat)
    with torch.no_grad():
        conv.weight.copy_(1j * torch.ones_like(conv.weight))
        conv.bias.fill_(-100.0)
    net = nn.Sequential(OrderedDict(conv=conv))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norms = weight_norms(net, ["conv"])
        assert negative_biases(list(net.named_children())) == []
    assert norms["conv"] == pytest.approx(2.0)


def test_stats_dead_alerts_cross_or_rise():
    assert dead_alerts({"a": 0.25}, {}, 0.25) == [("a", 0.25, None)]
    assert dead_alerts({"a": 0.3}, {"a": 0.3}, 0.25) == []  # already above: said once
    assert dead_alerts({"a": 0.2}, {"a": 0.05}, 0.25) == [("a", 0.2, 0.05)]  # rose by 0.15
    assert dead_alerts({"a": 0.12}, {}, 0.25) == []  # first log: no rise to measure
    text = diagnosis_text([("relu1", 0.5, 0.1)], {"relu1": list(range(20))}, 40, 1)
    assert "`relu1`: 50%" in text and "step 40 (epoch 1)" in text and "..." in text
    for remedy in ("learning rate", "LeakyReLU", "initialisation", "BatchNorm", "bias"):
        assert remedy in text


def test_stats_dead_history_round_trip():
    figures = {"r": compute_stats(_merged(torch.tensor([[0.0, 1.0]])), tau=0.025)}
    history = DeadHistory(0.25, strip_length=3)
    for _ in range(5):
        history.update(figures)
    again = DeadHistory(0.25, strip_length=3)
    again.load_state_dict(history.state_dict())
    assert torch.equal(again.strips["r"], history.strips["r"]) and again.previous == {"r": 0.5}
    assert again.strips["r"].shape == (2, 3) and history.dead == {"r": [0]}
    assert again.update(figures) == []


def test_stats_recorder_ignores_eval_passes_and_keeps_failures():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    rec = Recorder()
    rec.trace(net, {"1": net[1]}, torch.zeros(1, 2))
    rec.attach({"1": net[1]})
    net(torch.ones(4, 2))
    net.eval()
    net(torch.ones(8, 2))  # another monitor's probe pass: not counted
    net.train()
    rec.detach()
    rec.detach()  # idempotent
    assert float(rec.stats["1"].state["count"]) == 4 and not net[1]._forward_hooks
    rec.record("1", torch.ones(2, 7))  # another width: traced anew at the event, no failure
    assert rec.stale and rec.failure is None
    rec.record("1", None)  # anything else: kept, never raised
    assert isinstance(rec.failure, AttributeError)


@pytest.mark.parametrize("nonnegative", [False, True])
def test_stats_sliced_batches_match_the_whole_batch(nonnegative):
    # 40 samples of 16,000 entries: slices of 16 samples, the last one short
    x = torch.randn(40, 8, 2000, generator=torch.Generator().manual_seed(3))
    x = x.relu() if nonnegative else x
    x[:, 5] = 0.0
    x[39, 5, 7] = 0.5  # channel 5 active on one entry of the last slice only
    exact = _exact_counts(x, 0.0, "positive")
    out = batch_stats(x, nonnegative=nonnegative)
    for key in ("active", "nonzero", "nonfinite", "max_abs"):
        assert out[key].tolist() == exact[key].double().tolist(), key
    torch.testing.assert_close(out["abs_sum"], exact["abs_sum"].double(), rtol=1e-5, atol=1e-3)
    expected = torch.dot(x.flatten().double(), x.flatten().double())
    torch.testing.assert_close(out["sumsq"], expected, rtol=1e-5, atol=0)
    assert out["active"][5] == 1
    x[39, 0, 0] = float("inf")  # in the last slice: the whole batch goes the exact way
    assert float(batch_stats(x, nonnegative=nonnegative)["nonfinite"]) == 1.0


def test_stats_a_layer_re_made_at_another_width_is_traced_anew_not_a_failure():
    # setups hunt 69: a conv widened mid-run left its ReLU 24 channels wide; the statistics
    # kept 16 and the monitor failed, every layer's statistics lost for the rest of the run
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3), relu=nn.ReLU()))
    rec = Recorder()
    rec.trace(net, {"relu": net.relu}, torch.rand(1, 1, 6, 6))
    net.train()
    rec.record("relu", torch.rand(2, 6, 4, 4))  # the width changed
    assert rec.failure is None and rec.stale
    rec.forget()
    rec.trace(net, {"relu": net.relu}, torch.rand(1, 1, 6, 6))
    assert not rec.stale and rec.stats["relu"].channels == 4
