import math

import pytest
import torch

from lightning_cnnviz.core.findings import Finding
from lightning_cnnviz.core.summary import summary_text
from lightning_cnnviz.overfitting.draw import custom_scalars_layout, per_class_image, split_scalars
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.metrics import (
    PER_CLASS_MAX,
    expected_calibration_error,
    figures,
    per_class_accuracy,
    pick_metric,
)


def logits_for(confidences, predicted, num_classes=2):
    """Logits whose softmax puts ``c`` on ``predicted`` and spreads ``1 - c`` on the rest."""
    rows = []
    for c, p in zip(confidences, predicted, strict=True):
        probs = torch.full((num_classes,), (1 - c) / (num_classes - 1), dtype=torch.float64)
        probs[p] = c
        rows.append(probs.log())
    return torch.stack(rows).float()


def test_metrics_ece_hand_computed(tmp_path):
    # Two samples share bin 13 (conf 0.9: one right, one wrong): |0.5 - 0.9| x 2/4;
    # conf 0.65 (bin 9, right): |1 - 0.65| / 4; conf 0.7 (bin 10, right): |1 - 0.7| / 4.
    logits = logits_for([0.9, 0.9, 0.65, 0.7], [0, 0, 1, 1])
    labels = torch.tensor([0, 1, 1, 1])
    ece = expected_calibration_error(logits, labels)
    assert ece.dim() == 0 and ece.dtype == torch.float32
    assert float(ece) == pytest.approx((0.4 * 2 + 0.35 + 0.3) / 4, abs=1e-6)


def test_metrics_ece_bins_are_right_closed_and_fifteen(tmp_path):
    # 0.5 lies on the edge k/n only for n even; with 15 bins 0.5 falls in (7/15, 8/15].
    # Confidence 0.52 (right) and 0.53 (wrong) share bin 7 with 15 bins (acc 0.5, conf
    # 0.525) but not with 20 bins (0.52 in (10/20, 11/20], 0.53 too) -> use 0.54 vs 0.56.
    logits = logits_for([0.52, 0.56], [0, 0])
    labels = torch.tensor([0, 1])
    # 15 bins: 0.52*15 = 7.8 and 0.56*15 = 8.4 -> bins 7 and 8 -> (0.48 + 0.56) / 2
    assert float(expected_calibration_error(logits, labels)) == pytest.approx(0.52, abs=1e-6)
    # 1 bin: |0.5 - 0.54| = 0.04
    assert float(expected_calibration_error(logits, labels, n_bins=1)) == pytest.approx(
        0.04, abs=1e-6
    )


def test_metrics_ece_matches_a_loop_reference(tmp_path):
    g = torch.Generator().manual_seed(0)
    logits, labels = (
        3 * torch.randn(500, 10, generator=g),
        torch.randint(0, 10, (500,), generator=g),
    )
    conf, pred = logits.softmax(1).max(1)
    expected = 0.0
    for k in range(15):
        inside = (conf > k / 15) & (conf <= (k + 1) / 15)
        if inside.any():
            acc = (pred[inside] == labels[inside]).float().mean()
            expected += float(inside.float().mean() * (acc - conf[inside].mean()).abs())
    assert float(expected_calibration_error(logits, labels)) == pytest.approx(expected, abs=1e-5)


def test_metrics_ece_perfect_and_empty(tmp_path):
    sure = torch.tensor([[50.0, 0.0], [0.0, 50.0]])
    assert float(expected_calibration_error(sure, torch.tensor([0, 1]))) == pytest.approx(0.0)
    assert float(expected_calibration_error(sure, torch.tensor([1, 0]))) == pytest.approx(1.0)
    empty = expected_calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert float(empty) == 0.0


def test_metrics_per_class_accuracy(tmp_path):
    logits = torch.eye(4)[[0, 1, 1, 3, 3, 0]]  # predictions 0 1 1 3 3 0
    labels = torch.tensor([0, 1, 0, 3, 3, 3])
    acc = per_class_accuracy(logits, labels)
    assert acc[:2].tolist() == [0.5, 1.0] and math.isnan(acc[2]) and acc[3] == pytest.approx(2 / 3)
    assert per_class_accuracy(logits, labels, num_classes=5).shape == (5,)


def test_metrics_summary_text(tmp_path):
    assert summary_text([]) == "lightning-cnnviz: no problems found in this run."
    found = [
        Finding("overfitting", "overfitting", 60, 5, "Overfitting since epoch 4.", {}),
        Finding("activations", "dead_units", 40, 3, "**relu1**: dead\nmore", {}),
        Finding("kernels", "hf_energy", 40, 3, "x" * 300, {}),
    ]
    lines = summary_text(found).splitlines()
    assert lines[0] == "lightning-cnnviz: 3 problem(s) in this run:"
    assert lines[1] == "  - [overfitting/overfitting] epoch 5, step 60: Overfitting since epoch 4."
    assert lines[2] == "  - [activations/dead_units] epoch 3, step 40: relu1: dead"
    assert len(lines[3]) < 260 and lines[3].endswith("...")


def test_metrics_pick_metric_prefers_current_values(tmp_path):
    logged = {"train/loss": torch.tensor(0.3), "train/loss_step": 0.3, "train/loss_epoch": 0.5}
    assert float(pick_metric(logged, "train/loss", epoch_level=True)) == pytest.approx(0.5)
    assert float(pick_metric(logged, "train/loss", epoch_level=False)) == pytest.approx(0.3)
    assert float(pick_metric({"a_step": 2}, "a", epoch_level=True)) == 2.0
    assert pick_metric({"b": 1.0}, "a", epoch_level=True) is None


def test_metrics_custom_scalars_layout(tmp_path):
    import re

    layout = custom_scalars_layout(tag=lambda t: f"pre/overfitting/{t}")
    (category,) = layout
    charts = layout[category]
    assert category == "pre/overfitting/train vs val"
    assert set(charts) >= {"loss", "accuracy", "calibration error (ECE)"}
    kind, (pattern,) = charts["loss"]
    assert kind == "Multiline"
    assert re.search(pattern, "pre/overfitting/loss")
    assert not re.search(pattern, "pre/overfitting/loss_step")
    assert re.search(charts["calibration error (ECE)"][1][0], "pre/overfitting/ece")


def test_metrics_split_scalars_share_a_tag_per_twin(tmp_path):
    ev = Evaluation(step=3, epoch=1, train_loss=0.2, val_loss=0.5, val_acc=0.8, ece_train=0.1)
    twins = split_scalars(ev, tag=lambda t: f"overfitting/{t}")
    assert twins == {
        "train": {"overfitting/loss": 0.2, "overfitting/ece": 0.1},
        "val": {"overfitting/loss": 0.5, "overfitting/accuracy": 0.8},
    }


def test_metrics_per_class_image(tmp_path):
    image = per_class_image(torch.tensor([1.0, 0.5, math.nan, 0.0]), epoch=3)
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    many = per_class_image(torch.linspace(0, 1, 200), epoch=0)
    few = per_class_image(torch.linspace(0, 1, 40), epoch=0)
    assert many.shape == few.shape  # capped at the 40 worst classes


def test_figures_discordant_shares_of_the_two_val_passes():
    labels = torch.tensor([0, 1, 0, 1])
    eval_out = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # right: 0, 3
    bn_out = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # right: 0, 1, 2
    host, _, _ = figures({}, {"val": eval_out, "bn": bn_out}, {"val": labels})
    assert (host["bn_only"], host["eval_only"]) == (0.5, 0.25)
    assert host["probe_acc_bn"] - host["probe_acc_val"] == 0.25
    host, _, _ = figures({}, {"val": eval_out}, {"val": labels})
    assert "bn_only" not in host


def test_metrics_figures_skip_per_class_counts_beyond_per_class_max():
    # setups hunt 19: 10,000 classes made each evaluation a (K, K) matrix of Python floats
    # scanned twice (28 s against 1.5 s for the bare fit)
    k = PER_CLASS_MAX + 1
    logits = torch.zeros(4, k)
    logits[torch.arange(4), torch.tensor([3, 7, 7, 9])] = 5.0
    labels = torch.tensor([3, 7, 8, 9])
    host, per_class, confusion = figures({}, {"val": logits}, {"val": labels})
    assert (per_class, confusion) == ([], None)
    assert host["probe_acc_val"] == pytest.approx(0.75) and host["classes"] == k


def test_metrics_interval_loss_keeps_the_first_step_and_the_last_steps(tmp_path):
    import lightning as L
    from torch import nn
    from torch.utils.data import DataLoader

    from lightning_cnnviz.overfitting.callback import OverfittingMonitor
    from lightning_cnnviz.overfitting.interval_loss import IntervalLoss
    from tests.overfitting.runs import Net, one_hot_set

    interval = IntervalLoss()
    interval.fresh = False  # a resumed run's: no first step's
    for loss in (0.01, 2.0):
        interval.add(torch.tensor(loss))
    assert interval.first is None and float(interval.recent) == pytest.approx(0.408)
    # a run resumed from a checkpoint keeps no first loss (setups hunt 36: the resumed
    # run's 0.0126 read as the run's first, about ln 4 = 1.39)
    train, val = DataLoader(one_hot_set([16] * 4), 16), DataLoader(one_hot_set([8] * 4), 16)
    firsts = []
    for epochs, ckpt in ((1, None), (2, tmp_path / "a.ckpt")):
        monitor = OverfittingMonitor(num_samples=16)
        trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=epochs, logger=False,
                            callbacks=[monitor], enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
        trainer.fit(
            Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), 0.1), train, val, ckpt_path=ckpt
        )
        trainer.save_checkpoint(tmp_path / "a.ckpt")
        firsts.append(monitor._interval.first)
    assert float(firsts[0]) > 1.0 and firsts[1] is None  # untrained on 4 classes: ~ln 4
    # setups hunt 37: two optimisers stepped by hand count two steps a batch; a fresh run
    # keeps its first loss all the same

    class TwoOptimisers(Net):
        def __init__(self):
            super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), 0.1)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            loss = self._step(batch, "train")
            self.manual_backward(loss)
            for opt in self.optimizers():
                opt.step()
                opt.zero_grad()
            return loss

        def configure_optimizers(self):
            w, b = self.net[1].parameters()
            return torch.optim.SGD([w], lr=0.1), torch.optim.SGD([b], lr=0.1)

    monitor = OverfittingMonitor(num_samples=16)
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, callbacks=[monitor],
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)  # fmt: skip
    trainer.fit(TwoOptimisers(), train, val)
    assert trainer.global_step == 8 and float(monitor._interval.first) > 1.0
