import io
import json
import os
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.activations.draw import strip_layout
from lightning_cnnviz.activations.stats import ActivationStats, all_reduce_states
from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.findings import findings_of
from tests.tb import events, texts

ROOT = Path(__file__).resolve().parents[2]

# Planted dead channels, per watched call site (module ReLU, functional ReLU read from its
# producing conv, a shared ReLU module at two call sites, a functional ReLU after a linear).
PLANTED = {
    "relu1": [1, 4],
    "conv2": [0, 5, 6],
    "conv3": [2],  # read before the ReLU(inplace=True) that follows it rewrites its output
    "act#0": [2],
    "act#1": [3, 7, 8, 15],
    "fc2": [0, 11],
}
WIDTH = {"relu1": 8, "conv2": 8, "conv3": 8, "act#0": 8, "act#1": 16, "fc2": 12}


class Planted(L.LightningModule):
    """Fixed weights: every unit's output is its bias (+1 alive, -100 planted dead) +- 0.3."""

    def __init__(self, lr: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.conv1, self.relu1 = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)  # followed by F.relu
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)  # shared: after conv3 (act#0) and after fc1 (act#1)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 12)  # followed by F.relu
        self.head = nn.Linear(12, 4)
        self.hook_log: list[tuple[int, int, int]] = []
        g = torch.Generator().manual_seed(0)
        planted = {"conv1": [1, 4], "conv2": [0, 5, 6], "conv3": [2], "fc1": [3, 7, 8, 15]}
        planted["fc2"] = [0, 11]
        with torch.no_grad():
            for name, dead in planted.items():
                layer = getattr(self, name)
                layer.weight.copy_(0.001 * torch.randn(layer.weight.shape, generator=g))
                layer.bias.fill_(1.0)
                layer.bias[dead] = -100.0

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(self.relu1(self.conv1(x)))), 2)
        x = self.act(self.fc1(self.act(self.conv3(x)).flatten(1)))
        return self.head(F.relu(self.fc2(x)))

    def training_step(self, batch, batch_idx):
        self.hook_log.append((self.trainer.global_step, batch_idx, sum(hook_count(self).values())))
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders(n=64, nan=False):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 4
    if nan:
        x[3, 0, 0, 0] = float("nan")
    val = TensorDataset(torch.randn(16, 1, 8, 8, generator=g), torch.arange(16) % 4)
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(val, batch_size=8)


def fit(tmp_path, monitor, model=None, *, nan=False, **trainer_args):
    model = model or Planted()
    args = {"max_epochs": 1, "limit_val_batches": 0, "enable_checkpointing": False, **trainer_args}
    trainer = L.Trainer(
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
        logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[monitor], **args,
    )  # fmt: skip
    train, val = loaders(nan=nan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, train, val)
    return trainer, model, [str(w.message) for w in caught]


def scalars(tmp_path, tag):
    return {e.step: e.value for e in events(tmp_path).Scalars(tag)}


def strip_rows(tmp_path, tag, rows):
    """Per-row brightness of the last column of the last dead-strip image (cell centres)."""
    encoded = events(tmp_path).Images(tag)[-1].encoded_image_string
    image = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"), dtype=np.float64)
    columns = len(events(tmp_path).Images(tag))  # one column per log
    top, left, row_px, column_px = strip_layout(rows, columns, title=tag.split("/")[1])
    x = left + (columns - 1) * column_px + column_px // 2
    return [image[top + i * row_px + row_px // 2, x].mean() for i in range(rows)]


def test_activations_planted_dead_channels_exact(tmp_path):
    layers = ["relu1", "conv2", "conv3", "act", "fc2"]
    monitor = ActivationMonitor(layers=layers, every_n_steps=4, window=3)
    trainer, _, said = fit(tmp_path, monitor, max_steps=8)
    assert monitor.sites() == ["relu1", "conv2", "conv3", "act#0", "act#1", "fc2"]
    assert monitor.dead_channels == PLANTED
    for site, dead in PLANTED.items():
        assert scalars(tmp_path, f"activations/{site}/dead_fraction") == {
            4: pytest.approx(len(dead) / WIDTH[site]),
            8: pytest.approx(len(dead) / WIDTH[site]),
        }
        assert scalars(tmp_path, f"activations/{site}/dormant_fraction")[8] == pytest.approx(
            len(dead) / WIDTH[site]
        )
        brightness = strip_rows(tmp_path, f"activations/{site}/dead_strip", WIDTH[site])
        dark = [i for i, b in enumerate(brightness) if b < 40]
        assert dark == dead, (site, brightness)
    # conv3's output is kept before the in-place ReLU: its planted channel is negative
    assert scalars(tmp_path, "activations/conv3/mean")[8] == pytest.approx(-93 / 8, abs=0.05)
    assert scalars(tmp_path, "activations/act#0/mean")[8] == pytest.approx(7 / 8, abs=0.05)
    # relu1 (2/8), conv2 (3/8) and act#1 (4/16) reach the 0.25 threshold: one finding, once;
    # after 4 steps nothing tells that learning suffers (too few losses): a note, no warning
    assert not [m for m in said if m.startswith("Dead units")]
    (finding,) = [f for f in findings_of(trainer) if f.kind == "dead_units"]
    assert (finding.kind, finding.severity, finding.step) == ("dead_units", "note", 4)
    assert finding.figures["relu1"] == pytest.approx(0.25) and "progress" not in finding.figures
    text = finding.message
    assert "`relu1`: 25% of units dead (1, 4)" in text
    assert "`act#1`: 25% of units dead (3, 7, 8, 15)" in text
    assert "`conv2`: 38%" in text
    assert "`fc2`" not in text and "`act#0`" not in text
    (written,) = texts(events(tmp_path), "activations/diagnosis")
    assert text in written and "A note, not a problem" in text and "LeakyReLU" not in text
    assert "too few steps yet" in text
    # the planted weights (0.001 x randn) shrink the gradient at every layer on the way down
    (vanishing,) = [f for f in findings_of(trainer) if f.kind == "vanishing_gradients"]
    assert vanishing.figures["depth_ratio"] < 1e-6 and "`conv1`" in vanishing.message


def hooked(model):
    return {(step, batch) for step, batch, hooks in model.hook_log if hooks}


def test_activations_hooks_only_for_window_batches_with_accumulation(tmp_path):
    # 8 batches per epoch, a step every 2: step 3 ends batch 5, step 6 ends epoch 1's batch 3.
    monitor = ActivationMonitor(layers="relu1", every_n_steps=3, window=3)
    _, model, _ = fit(tmp_path, monitor, max_epochs=-1, max_steps=6, accumulate_grad_batches=2)
    assert hooked(model) == {(1, 3), (2, 4), (2, 5), (4, 1), (5, 2), (5, 3)}
    assert sorted(scalars(tmp_path, "activations/relu1/dead_fraction")) == [3, 6]
    assert sum(hook_count(model).values()) == 0


def test_activations_window_time_kept_apart_from_the_events(tmp_path):
    due = ActivationMonitor(layers="relu1", every_n_steps=4, window=3)
    fit(tmp_path / "due", due, max_steps=8)
    assert due.events == 2 and due.timings["window"] > 0
    assert due._rec.window_seconds == 0.0  # moved into the timings at each batch end
    never = ActivationMonitor(layers="relu1", every_n_steps=100, window=3)
    fit(tmp_path / "never", never, max_steps=8)
    assert never.events == 0 and never.timings["window"] == 0.0


def test_activations_epoch_schedule_hooks_last_batches(tmp_path):
    monitor = ActivationMonitor(layers="relu1", every_n_epochs=1, window=3)
    _, model, _ = fit(tmp_path, monitor, max_epochs=2)
    assert hooked(model) == {(5, 5), (6, 6), (7, 7), (13, 5), (14, 6), (15, 7)}
    assert sorted(scalars(tmp_path, "activations/relu1/dead_fraction")) == [8, 16]


class GradSpy(L.Callback):
    def __init__(self) -> None:
        self.norms = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.conv1.parameters()]
        self.norms[trainer.global_step + 1] = float(torch.cat([g.flatten() for g in grads]).norm())


def test_activations_grad_norm_of_producer_on_logging_steps(tmp_path):
    spy = GradSpy()
    monitor = ActivationMonitor(layers="relu1", every_n_steps=2, window=1)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=4, enable_progress_bar=False, callbacks=[monitor, spy],
        logger=TensorBoardLogger(tmp_path, name="tb"), enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(Planted(lr=0.01), loaders()[0])
    assert monitor._rec.sites["relu1"].producer == "conv1"
    logged = scalars(tmp_path, "activations/relu1/grad_norm")
    assert logged == {2: pytest.approx(spy.norms[2]), 4: pytest.approx(spy.norms[4])}


class TanhNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2, bias=False)
        self.tanh = nn.Tanh()
        self.out = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[10.0], [0.1]]))

    def forward(self, x):
        return self.out(self.tanh(self.fc(x.flatten(1)[:, :1])))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_activations_tanh_saturation_hand_computed(tmp_path):
    x = torch.tensor([1.0, -1.0]).repeat(16).view(32, 1, 1, 1)
    data = DataLoader(TensorDataset(x, torch.arange(32) % 2), batch_size=8)
    monitor = ActivationMonitor(every_n_steps=2, window=2, num_samples=4)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=2, enable_progress_bar=False, callbacks=[monitor],
        logger=TensorBoardLogger(tmp_path, name="tb"), enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(TanhNet(), data, data)
    assert monitor.sites() == ["tanh"]  # auto: the activation module
    assert scalars(tmp_path, "activations/tanh/saturation") == {2: pytest.approx(0.5)}
    assert scalars(tmp_path, "activations/tanh/dead_fraction") == {2: 0.0}  # |a| > 0 for Tanh
    assert scalars(tmp_path, "activations/tanh/mean") == {2: pytest.approx(0.0, abs=1e-6)}
    expected_std = ((np.tanh(10.0) ** 2 + np.tanh(0.1) ** 2) / 2) ** 0.5
    assert scalars(tmp_path, "activations/tanh/std")[2] == pytest.approx(expected_std, rel=1e-5)


class FunctionalNet(Planted):
    def __init__(self) -> None:
        super().__init__()
        del self.relu1, self.act  # no activation module at all

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.relu(self.fc1(F.relu(self.conv3(x)).flatten(1)))
        return self.head(F.relu(self.fc2(x)))


def test_activations_auto_falls_back_to_preactivations_and_says_so(tmp_path):
    monitor = ActivationMonitor(every_n_steps=4, window=2)
    fit(tmp_path, monitor, FunctionalNet(), max_steps=4)
    assert monitor.sites() == ["conv1", "conv2", "conv3", "fc1", "fc2"]  # head left out
    (layers,) = texts(events(tmp_path), "cnnviz/layers")
    assert "never positive" in layers
    assert monitor.dead_channels["fc1"] == [3, 7, 8, 15]


class UnusedModules(FunctionalNet):
    """ReLU modules defined and never called: ``forward`` rectifies with ``clamp``."""

    def __init__(self) -> None:
        super().__init__()
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = F.max_pool2d(self.conv2(self.conv1(x).clamp(min=0)).clamp(min=0), 2)
        x = self.fc1(self.conv3(x).clamp(min=0).flatten(1)).clamp(min=0)
        return self.head(self.fc2(x).clamp(min=0))


def test_activations_auto_never_called_modules_fall_back_and_say_so(tmp_path):
    # setups hunt 20: unused ReLU modules were watched, nothing recorded, the check "ran"
    monitor = ActivationMonitor(every_n_steps=4, window=2)
    _, _, said = fit(tmp_path, monitor, UnusedModules(), max_steps=4)
    assert monitor.sites() == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    told = [m for m in said if "are never called by the model's forward()" in m]
    assert len(told) == 1 and "`relu1`, `relu2`" in told[0]
    assert scalars(tmp_path, "activations/conv1/dead_fraction")


def test_activations_nonfinite_one_warning_finite_images(tmp_path):
    monitor = ActivationMonitor(layers="relu1", every_n_steps=2, window=8)
    trainer, _, said = fit(tmp_path, monitor, nan=True, max_steps=8)
    assert len([m for m in said if m.startswith("ActivationMonitor: non-finite")]) == 1
    # the NaN pixel in the first batch makes the first loss NaN: a divergence, told once
    (diverged,) = [f for f in findings_of(trainer) if f.kind == "divergence"]
    assert diverged.severity == "problem" and diverged.step == 2
    assert diverged.figures["first_nonfinite_step"] == 0  # the first batch's step, as logged
    assert diverged.figures["first_nonfinite_layer"] == "relu1"
    assert "The training batch at step 0 held NaN/Inf inputs" in diverged.message
    assert "check the training items for NaN/Inf" in diverged.message
    assert "lower the learning rate" not in diverged.message  # no update did it
    assert scalars(tmp_path, "activations/relu1/nonfinite")[2] > 0
    assert len(events(tmp_path).Images("activations/relu1/dead_strip")) == 4


def test_activations_histograms_opt_in(tmp_path):
    fit(tmp_path / "off", ActivationMonitor(layers="relu1", every_n_steps=4), max_steps=4)
    assert events(tmp_path / "off").Tags()["histograms"] == []
    on = ActivationMonitor(layers="relu1", every_n_steps=4, histograms=True)
    fit(tmp_path / "on", on, max_steps=4)
    (hist,) = events(tmp_path / "on").Histograms("activations/relu1/histogram")
    assert hist.histogram_value.num == 16 * 8 * 8 * 8 // 2  # 16 probe images, every 2nd value


def test_activations_diagnosis_resumes_from_checkpoint(tmp_path):
    """Strips, losses and findings go on: what was found before the stop is not found anew."""
    first = ActivationMonitor(layers="relu1", every_n_steps=4, window=2)
    trainer_a, _, _ = fit(tmp_path, first, max_steps=8, enable_checkpointing=True)
    assert first.history.strips["relu1"].shape == (8, 2)
    before = {f.kind: f for f in findings_of(trainer_a)}
    assert {"dead_units", "vanishing_gradients"} <= set(before)
    (ckpt,) = (tmp_path / "tb").rglob("*.ckpt")
    second = ActivationMonitor(layers="relu1", every_n_steps=4, window=2)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=16, enable_progress_bar=False, callbacks=[second],
        logger=TensorBoardLogger(tmp_path, name="tb2"), enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(Planted(), loaders()[0], ckpt_path=ckpt)
    assert second.history.strips["relu1"].shape == (8, 4)
    assert second.history.previous["relu1"] == pytest.approx(0.25)
    after = [(f.kind, f.step) for f in findings_of(trainer)]
    assert sorted(after) == sorted((k, f.step) for k, f in before.items())  # restored, once
    steps = [s for s, _ in second.diagnosis.loss.series]
    # each loss at its batch's step, as Lightning logs it (0-15 in 16 steps)
    assert steps == list(range(16)) and second.diagnosis.reported == first.diagnosis.reported


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "`window` must be a positive integer, got 0"),
        ({"tau": 1.5}, "`tau` must be a number in [0.0, 1.0], got 1.5"),
        ({"dead_threshold": -0.1}, "`dead_threshold` must be a number in [0.0, 1.0], got -0.1"),
        ({"eps": "small"}, "`eps` must be a number"),
        ({"histograms": "yes"}, "`histograms` must be one of [False, True], got 'yes'"),
        ({"strip_length": 2.5}, "`strip_length` must be a positive integer, got 2.5"),
    ],
)
def test_activations_arguments_checked(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ActivationMonitor(**kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reduce_worker(rank: int, port: int, out_dir: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    try:
        stats = ActivationStats(3)
        x = torch.zeros(4, 3)
        x[:, rank] = 1.0 + rank  # unit 0 fires on rank 0 only, unit 1 on rank 1 only
        stats.update(x)
        all_reduce_states([stats.state])
        out = stats.compute()
        torch.save({k: v for k, v in out.items()}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_activations_ddp_reduction_unit_active_on_one_rank_is_alive(tmp_path):
    mp.spawn(_reduce_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert out["dead"].tolist() == [False, False, True]
        assert float(out["dead_fraction"]) == pytest.approx(1 / 3)
        assert float(out["max_abs"]) == 2.0 and float(out["count"]) == 8.0


DDP_SCRIPT = """
import json, sys
import lightning as L
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from lightning.pytorch.loggers import TensorBoardLogger
from lightning_cnnviz.activations.callback import ActivationMonitor


class TwoRanks(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.fc, self.relu, self.out = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)
        with torch.no_grad():  # unit k = relu(x_k - 0.5) for k < 2; unit 2 = relu(-1)
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([-0.5, -0.5, -1.0]))

    def forward(self, x):
        return self.out(self.relu(self.fc(x)))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):  # rank 0 sees only x = (1, 0), rank 1 only x = (0, 1)
        x = torch.zeros(16, 2)
        x[:, self.global_rank] = 1.0
        return DataLoader(TensorDataset(x, torch.arange(16) % 2), batch_size=4)

    def val_dataloader(self):  # the probe: all zeros, activates nothing
        return DataLoader(TensorDataset(torch.zeros(8, 2), torch.arange(8) % 2), batch_size=4)


if __name__ == "__main__":
    out = sys.argv[1]
    monitor = ActivationMonitor(every_n_steps=2, window=2, num_samples=4, strict=True)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=2, default_root_dir=out,
        logger=TensorBoardLogger(out, name="tb"), callbacks=[monitor], enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=1,
        num_sanity_val_steps=0, use_distributed_sampler=False,
    )
    trainer.fit(TwoRanks())
    result = {"rank": trainer.global_rank, "events": monitor.events, "dead": monitor.dead_channels}
    with open(f"{out}/rank{trainer.global_rank}.json", "w") as file:
        json.dump(result, file)
"""


def test_activations_ddp_two_process_fit_reduces_dead_masks(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0["events"] == rank1["events"] == 1  # both ranks joined the collective
    assert rank0["dead"] == {"relu": [2]}  # units 0 and 1 each fired on one rank only
    assert scalars(tmp_path, "activations/relu/dead_fraction") == {2: pytest.approx(1 / 3)}


def test_activations_losses_read_as_training_step_returned_them_under_accumulation(tmp_path):
    # held out (hunt 22): Lightning hands on_train_batch_end the loss divided by
    # `accumulate_grad_batches`: every loss the rules read was 4x too small, and training
    # images blanked mid-run ended "no problems found"
    from lightning_cnnviz import OverfittingMonitor
    from tests.monitors import TinyCNN
    from tests.monitors import fit as fit_monitors

    activations, overfitting = ActivationMonitor(every_n_steps=2), OverfittingMonitor()
    model = TinyCNN()
    fit_monitors(tmp_path, [activations, overfitting], model=model, max_epochs=1,
                 accumulate_grad_batches=4)  # fmt: skip
    (step, first), *_ = activations.diagnosis.loss.series
    assert step == 0 and first > 1.0  # an untrained 4-class model: about ln 4, not ln 4 / 4
    assert float(overfitting._interval.first) == pytest.approx(first, rel=1e-6)
