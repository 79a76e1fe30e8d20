import io
import logging
import math
import re
import subprocess
import sys
import time
import warnings
from collections import defaultdict

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.plugins.custom_scalar import layout_pb2
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_cnnviz
from lightning_cnnviz.core.findings import Finding, findings_of, report
from lightning_cnnviz.core.inputs import to_image01
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.overfitting.confusion import Pair, pairs_image
from tests.tb import events, texts

# Scripted per-epoch metrics: best val loss at epoch 2 (0.8), rising from epoch 3 while
# train loss keeps falling -> onset epoch 3. Detected at epoch 6: until then the steep fall
# of epochs 0-2 dominates the curve's noise estimate (a clearer rise is needed).
TRAIN = [2.0, 1.0, 0.6, 0.4, 0.3, 0.2, 0.1]
VAL = [2.0, 1.1, 0.8, 0.85, 0.9, 0.95, 1.0]
HEALTHY = [2.0, 1.0, 0.7, 0.6, 0.55, 0.52, 0.5]
STEPS_PER_EPOCH = 2


def two_class(confidences, predicted, labels):
    """Inputs that an identity linear layer turns into logits with these softmax confidences."""
    x = torch.tensor(
        [
            [math.log(c), math.log(1 - c)][:: 1 if p == 0 else -1]
            for c, p in zip(confidences, predicted, strict=True)
        ]
    )
    return TensorDataset(x.view(-1, 1, 1, 2), torch.tensor(labels))


# Val probe: conf 0.9 right + 0.9 wrong (one bin), 0.65 right, 0.7 right -> ECE 0.3625;
# per class: class 0 1/1, class 1 2/3. Train probe: all right at 0.8 -> ECE 0.2.
VAL_SET = two_class([0.9, 0.9, 0.65, 0.7], [0, 0, 1, 1], [0, 1, 1, 1])
TRAIN_SET = two_class([0.8, 0.8, 0.8, 0.8], [0, 1, 0, 1], [0, 1, 0, 1])


class Scripted(L.LightningModule):
    """Fixed identity weights (lr 0); logs the scripted train/val metrics of each epoch."""

    def __init__(self, train=TRAIN, val=VAL, acc=True, step_and_epoch=True) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()
        self.train_series, self.val_series, self.acc = train, val, acc
        self.step_and_epoch = step_and_epoch

    def forward(self, x):
        return self.fc(x.flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        e = self.current_epoch
        kw = {"on_step": True, "on_epoch": True} if self.step_and_epoch else {}
        self.log("train/loss", self.train_series[e], **kw)
        if self.acc:
            self.log("train/acc", 0.8 + 0.03 * e, **kw)
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.val_series[self.current_epoch])
        if self.acc:
            self.log("val/acc", 0.75)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(tmp_path, monitor, model=None, epochs=7, callbacks=(), ckpt_path=None, prefix="", **kw):
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=epochs,
        logger=TensorBoardLogger(tmp_path, name="tb", version=0, prefix=prefix),
        callbacks=[monitor, *callbacks],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        log_every_n_steps=1,
        **kw,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(
            model or Scripted(),
            DataLoader(TRAIN_SET, batch_size=2),
            DataLoader(VAL_SET, batch_size=2),
            ckpt_path=ckpt_path,
        )
    return trainer, [str(w.message) for w in caught]


def scalars(acc, tag):
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_overfitting_detects_onset_and_reports_it(tmp_path, caplog):
    monitor = OverfittingMonitor(num_samples=4)
    with caplog.at_level(logging.INFO):
        trainer, said = fit(tmp_path, monitor)
    acc = events(tmp_path / "tb")
    steps = [STEPS_PER_EPOCH * (e + 1) for e in range(len(TRAIN))]
    gap_loss = scalars(acc, "overfitting/gap_loss")
    assert list(gap_loss) == steps  # once per validation, none at the sanity check (step 0)
    assert [round(v, 5) for v in gap_loss.values()] == [
        round(v - t, 5) for t, v in zip(TRAIN, VAL, strict=True)
    ]
    gap_acc = scalars(acc, "overfitting/gap_acc")
    assert [round(v, 5) for v in gap_acc.values()] == [round(0.05 + 0.03 * e, 5) for e in range(7)]
    assert all(
        v == pytest.approx(0.3625, abs=1e-5) for v in scalars(acc, "overfitting/ece_val").values()
    )
    assert all(
        v == pytest.approx(0.2, abs=1e-5) for v in scalars(acc, "overfitting/ece_train").values()
    )
    # signed calibration: mean confidence (0.9 + 0.9 + 0.65 + 0.7) / 4 at 3/4 right
    over = scalars(acc, "overfitting/overconfidence_val")
    assert all(v == pytest.approx(0.7875 - 0.75, abs=1e-5) for v in over.values())
    assert "overfitting/bn_gap_acc" not in acc.Tags()["scalars"]  # no BatchNorm here
    assert [e.step for e in acc.Images("overfitting/per_class")] == steps
    assert [e.step for e in acc.Images("overfitting/confusion")] == steps
    # the confused pair (true 1 taken for 0) with its example: val image 1, as written
    shown = acc.Images("overfitting/confused_pairs")
    assert [e.step for e in shown] == steps
    example = to_image01(VAL_SET[1][0][None], None)
    want = pairs_image([Pair(1, 0, 1, 1 / 3, [1])], [example], epoch=len(TRAIN) - 1)
    got = np.asarray(Image.open(io.BytesIO(shown[-1].encoded_image_string)).convert("RGB"))
    assert np.array_equal(got, want.permute(1, 2, 0).numpy())
    (text,) = texts(acc, "overfitting/diagnosis")
    assert acc.Tensors("overfitting/diagnosis/text_summary")[0].step == 14
    assert text.startswith(
        "**Overfitting since epoch 3 (step 8): val loss 1 is 25% above its best (0.8 at epoch 2)"
    )
    assert "Best so far: **epoch 2 (step 6)**: val loss 0.8, val acc 75.0%" in text
    assert "train loss 0.1, val loss 1; train acc 98.0%, val acc 75.0%" in text
    assert "over-confident on validation images: mean confidence 0.7875 at 75.0%" in text
    assert "val 0.3625, train 0.2" in text and "weight decay" in text
    assert "- true **1** taken for **0**: 1 of 3 probe images (33%), e.g. dataset indices 1" in text
    warned = [m for m in said if "Overfitting since" in m]
    assert len(warned) == 1 and "overfitting/diagnosis" in warned[0]
    assert not [m for m in said if "cannot find" in m]
    (finding,) = findings_of(trainer)
    assert (finding.source, finding.kind, finding.step, finding.epoch, finding.severity) == (
        "overfitting",
        "overfitting",
        14,
        6,
        "problem",
    )
    assert finding.figures["val_loss"] == pytest.approx(1.0)
    assert (finding.figures["best_epoch"], finding.figures["since_epoch"]) == (2, 3)
    assert finding.figures["confused_pairs"] == [(1, 0, 1)]
    assert "lightning-cnnviz: 1 problem(s) in this run:" in caplog.text
    assert "[overfitting/overfitting] epoch 6, step 14: Overfitting since epoch 3" in caplog.text
    assert caplog.text.count("lightning-cnnviz: 1 problem(s)") == 1
    (summary,) = texts(acc, "cnnviz/summary")  # the console summary, in the Text tab too
    assert summary.startswith("lightning-cnnviz: 1 problem(s) in this run:")
    ran = "Checks that ran: OverfittingMonitor (training order, val labels of every class, "
    ran += "overfitting, memorisation, "
    assert (
        ran + "train/val gap, inputs of train vs val, loss fed probabilities, loss negated, val "
        "metrics of this model, training loss climbing, weight decay)." in summary
    )
    assert "OverfittingMonitor/not learning (the val probe holds 4 images, too few" in summary
    assert "OverfittingMonitor/val data apart from training (needs 8 items in each" in summary
    assert "OverfittingMonitor/BatchNorm train/eval (no BatchNorm layer)" in summary


@pytest.mark.parametrize("prefix", ["", "exp"])
def test_overfitting_writes_custom_scalars_layout(tmp_path, prefix):
    # a logger's `prefix` ("exp" -> "exp-run1/...") reaches the charts as the scalars' tags
    fit(tmp_path, OverfittingMonitor(num_samples=4, tag_prefix="run1/"), epochs=2, prefix=prefix)
    acc = events(tmp_path / "tb")
    (config,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout()
    layout.ParseFromString(config.tensor_proto.string_val[0])
    (category,) = layout.category
    tag = f"{prefix}-run1/overfitting" if prefix else "run1/overfitting"
    assert category.title == f"{tag}/train vs val"
    charts = {c.title: list(c.multiline.tag) for c in category.chart}
    assert charts["loss"] == [rf"^{re.escape(tag)}/loss$"]
    assert charts["accuracy"] == [rf"^{re.escape(tag)}/accuracy$"]
    assert f"{tag}/gap_loss" in acc.Tags()["scalars"]
    # each chart's tag holds the train value in the run `train`, the val value in `val`
    lightning = f"{prefix}-" if prefix else ""  # Lightning's own keys get it too
    keys = {"train": f"{lightning}train/loss_epoch", "val": f"{lightning}val/loss"}
    logged = {k: [e.value for e in acc.Scalars(k)] for k in keys.values()}
    for split, key in keys.items():
        twin = events(tmp_path / "tb" / "version_0" / split)
        values = [e.value for e in twin.Scalars(f"{tag}/loss")]
        assert len(values) == 2 and values == pytest.approx(logged[key]), split


def test_overfitting_healthy_run_has_no_finding(tmp_path, caplog):
    monitor = OverfittingMonitor(num_samples=4)
    with caplog.at_level(logging.INFO):
        trainer, said = fit(tmp_path, monitor, Scripted(val=HEALTHY))
    acc = events(tmp_path / "tb")
    assert findings_of(trainer) == [] and monitor.detector.reported == {}
    assert "overfitting/diagnosis/text_summary" not in acc.Tags()["tensors"]
    assert not [m for m in said if "Overfitting" in m]
    assert "lightning-cnnviz: no problems found by the checks that ran." in caplog.text
    (summary,) = texts(acc, "cnnviz/summary")
    assert summary.startswith("lightning-cnnviz: no problems found by the checks that ran.")
    assert len(monitor.detector.history) == 7


def test_overfitting_reads_epoch_level_train_values(tmp_path):
    # Per-step values that differ from the epoch mean: the epoch mean must be used.
    class Steps(Scripted):
        def training_step(self, batch, batch_idx):
            self.log("train/loss", 1.0 + batch_idx, on_step=True, on_epoch=True)  # mean 1.5
            return F.cross_entropy(self(batch[0]), batch[1])

    fit(tmp_path, OverfittingMonitor(num_samples=4), Steps(), epochs=2)
    gap = scalars(events(tmp_path / "tb"), "overfitting/gap_loss")
    assert gap == {2: pytest.approx(2.0 - 1.5), 4: pytest.approx(1.1 - 1.5)}


def test_overfitting_mid_epoch_validation_uses_latest_values(tmp_path):
    monitor = OverfittingMonitor(num_samples=4)
    fit(tmp_path, monitor, Scripted(step_and_epoch=False), epochs=2, val_check_interval=1)
    gap = scalars(events(tmp_path / "tb"), "overfitting/gap_loss")
    assert list(gap) == [1, 2, 3, 4]  # every validation, at its own step
    assert gap[1] == pytest.approx(0.0) and gap[3] == pytest.approx(0.1)


def test_overfitting_mid_epoch_train_loss_is_the_interval_mean_of_the_returned_loss(tmp_path):
    # the key logs the returned loss per step: mid-epoch it holds one batch's, so the
    # evaluation reads the mean of the steps since the last one (the gap scalar shows it)
    class Steps(Scripted):
        def __init__(self):
            super().__init__(step_and_epoch=False)
            self.losses = []

        def training_step(self, batch, batch_idx):
            loss = torch.tensor(0.5 + batch_idx + 4 * self.current_epoch) + 0 * self.fc.bias.sum()
            self.log("train/loss", loss, on_step=True, on_epoch=False)
            self.log("train/acc", 0.8)
            self.losses.append(float(loss))
            return loss

    model, monitor = Steps(), OverfittingMonitor(num_samples=4)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=1, val_check_interval=2, log_every_n_steps=1,
        logger=TensorBoardLogger(tmp_path, name="tb", version=0), callbacks=[monitor],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    train = DataLoader(torch.utils.data.ConcatDataset([TRAIN_SET] * 2), batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, train, DataLoader(VAL_SET, batch_size=2))
    assert model.losses == [0.5, 1.5, 2.5, 3.5]  # validations after steps 2 and 4
    mid, end = monitor.detector.history
    assert mid.train_loss == pytest.approx((0.5 + 1.5) / 2)  # not 1.5, the latest batch's
    # the epoch's end too: a key logged per step only holds the last batch's there
    assert end.train_loss == pytest.approx((2.5 + 3.5) / 2)
    assert mid.first_loss == end.first_loss == pytest.approx(0.5)  # the run's first step's
    gap = scalars(events(tmp_path / "tb"), "overfitting/gap_loss")
    assert gap[2] == pytest.approx(VAL[0] - 1.0)


def test_overfitting_every_n_epochs(tmp_path):
    fit(tmp_path, OverfittingMonitor(num_samples=4, every_n_epochs=2), epochs=5)
    assert list(scalars(events(tmp_path / "tb"), "overfitting/ece_val")) == [4, 8]


def test_overfitting_every_n_steps(tmp_path):
    # Validations at steps 2, 4, ..., 10: the run's first one, then the first at or after
    # each multiple of 3 (3 -> 4, 6 -> 6, 9 -> 10), as `Schedule.due_on_step(first_chance=True)`.
    fit(tmp_path, OverfittingMonitor(num_samples=4, every_n_steps=3), epochs=5)
    assert list(scalars(events(tmp_path / "tb"), "overfitting/ece_val")) == [2, 4, 6, 10]


def test_overfitting_missing_keys_said_once(tmp_path):
    monitor = OverfittingMonitor(num_samples=4)
    trainer, said = fit(tmp_path, monitor, Scripted(acc=False))
    missing = [m for m in said if "cannot find" in m]
    assert len(missing) == 1
    assert (
        "`train/acc`" in missing[0] and "`val/acc`" in missing[0] and "`val/loss`" not in missing[0]
    )
    acc = events(tmp_path / "tb")
    assert "overfitting/gap_loss" in acc.Tags()["scalars"]
    assert "overfitting/gap_acc" not in acc.Tags()["scalars"]
    assert [f.kind for f in findings_of(trainer)] == ["overfitting"]  # loss rule still works
    (text,) = texts(acc, "overfitting/diagnosis")
    assert "train probe acc 100.0%, val acc 75.0%" in text  # the probes' accuracy stands in


def test_overfitting_custom_keys(tmp_path):
    class Renamed(Scripted):
        def validation_step(self, batch, batch_idx):
            self.log("loss_val", self.val_series[self.current_epoch])

    monitor = OverfittingMonitor(num_samples=4, val_loss_key="loss_val", val_acc_key="acc_val")
    trainer, said = fit(tmp_path, monitor, Renamed())
    assert [f.epoch for f in findings_of(trainer)] == [6]
    assert "`acc_val`" in next(m for m in said if "cannot find" in m)
    assert (
        'EarlyStopping(monitor="loss_val"'
        in texts(events(tmp_path / "tb"), "overfitting/diagnosis")[0]
    )


def test_overfitting_default_keys_read_under_the_names_the_module_logs(tmp_path, caplog):
    # held out: a module logging `val_loss` got "cannot find `val/loss`" and no overfitting
    # finding, while the same run logging `val/loss` got one
    class Underscored(Scripted):
        def training_step(self, batch, batch_idx):
            e = self.current_epoch
            self.log("train_loss", self.train_series[e], on_step=True, on_epoch=True)
            self.log("training_accuracy", 0.8 + 0.03 * e, on_step=True, on_epoch=True)
            return F.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.val_series[self.current_epoch])
            self.log("valid/accuracy", 0.75)

    monitor = OverfittingMonitor(num_samples=4)
    with caplog.at_level(logging.INFO):
        trainer, said = fit(tmp_path, monitor, Underscored())
    assert not [m for m in said if "cannot find" in m]
    assert [f.epoch for f in findings_of(trainer)] == [6]  # as `Scripted` under the defaults
    assert monitor.keys == {
        "train_loss": "train_loss",
        "val_loss": "val_loss",
        "train_acc": "training_accuracy",
        "val_acc": "valid/accuracy",
    }
    told = [r.getMessage() for r in caplog.records]
    (line,) = [m for m in told if "the same metrics in other words" in m]  # one line for all
    assert "`val_loss` for `val/loss`" in line and "`valid/accuracy` for `val/acc`" in line
    gap = scalars(events(tmp_path / "tb"), "overfitting/gap_acc")
    assert gap[2] == pytest.approx(0.80 - 0.75, abs=1e-6)  # train - val, from the renamed keys


def test_overfitting_gathers_other_findings(tmp_path):
    class Reporter(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            e = trainer.current_epoch
            if e == 3:
                report(trainer, Finding("activations", "dead_units", 6, 3, "relu1: 40% dead", {}))
            if e == 7:
                report(trainer, Finding("kernels", "hf_energy", 14, 7, "conv1 hf_energy up", {}))

    # epoch 7: val loss no worse than at 6, so only the new finding rewrites the diagnosis
    model = Scripted(train=[*TRAIN, 0.05], val=[*VAL, 1.0])
    trainer, _ = fit(tmp_path, OverfittingMonitor(num_samples=4), model, 8, [Reporter()])
    acc = events(tmp_path / "tb")
    first, updated = texts(acc, "overfitting/diagnosis")
    assert [e.step for e in acc.Tensors("overfitting/diagnosis/text_summary")] == [14, 16]
    assert "- **activations** (dead_units, problem, epoch 3, step 6): relu1: 40% dead" in first
    assert "kernels" not in first
    assert "relu1: 40% dead" in updated and "conv1 hf_energy up" in updated
    assert updated.startswith("**Overfitting since epoch 3 (step 8)")
    assert [f.kind for f in findings_of(trainer)] == ["dead_units", "overfitting", "hf_energy"]


def test_overfitting_finding_read_back_through_public_findings_of(tmp_path):
    trainer, _ = fit(tmp_path, OverfittingMonitor(num_samples=4))
    (finding,) = lightning_cnnviz.findings_of(trainer)
    assert (finding.source, finding.kind, finding.step, finding.epoch) == (
        "overfitting",
        "overfitting",
        14,
        6,
    )
    assert finding.message.startswith("Overfitting since epoch 3 (step 8): val loss 1 is 25%")
    assert finding.figures["val_loss"] == pytest.approx(1.0)
    assert finding.figures["train_loss"] == pytest.approx(0.1)
    assert finding.figures["ece_val"] == pytest.approx(0.3625, abs=1e-5)
    assert "findings_of" in dir(lightning_cnnviz)


def test_overfitting_public_findings_of_is_cheap_to_import():
    code = (
        "import sys, lightning_cnnviz; lightning_cnnviz.findings_of; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_overfitting_takes_no_layers():
    with pytest.raises(TypeError, match="takes no `layers`"):
        OverfittingMonitor(layers="conv1")


def test_overfitting_resume_continues_the_series(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = OverfittingMonitor(num_samples=4)
    fit(tmp_path / "a", first, epochs=6, callbacks=[ckpt])  # rising since epoch 3, not told yet
    assert first.detector.reported == {} and len(first.detector.history) == 6
    resumed = OverfittingMonitor(num_samples=4)
    trainer, _ = fit(tmp_path / "b", resumed, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed._probe_indices == first._probe_indices
    assert [(f.epoch, f.step) for f in findings_of(trainer)] == [(6, 14)]
    assert len(resumed.detector.history) == 7
    assert texts(events(tmp_path / "b" / "tb"), "overfitting/diagnosis")[0].startswith(
        "**Overfitting since epoch 3 (step 8)"
    )


def test_overfitting_times_all_its_work(tmp_path):
    # Wall time is what a user pays: every hook's work must show in `timings`.
    monitor = OverfittingMonitor(num_samples=4)
    spent = defaultdict(float)

    def timed(name, hook):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return run

    hooks = ("setup", "on_validation_end", "on_train_batch_start", "on_train_batch_end")
    for name in (*hooks, "on_train_epoch_end", "on_fit_end"):
        setattr(monitor, name, timed(name, getattr(monitor, name)))
    fit(tmp_path, monitor, epochs=3)
    t = monitor.timings
    parts = {"probe", "capture", "compute", "render", "write"}
    assert parts | {"total", "setup", "summary", "flush"} <= set(t)
    own = t["total"] + t["setup"] + t["summary"] + t["flush"]
    assert sum(t[k] for k in parts) <= t["total"]
    assert sum(spent.values()) - own < 0.01 + 0.1 * own


def test_overfitting_probe_is_capped_at_dataset_size(tmp_path):
    monitor = OverfittingMonitor()  # 128 requested, 4 available per split
    fit(tmp_path, monitor, epochs=1)
    assert sorted(monitor._probe_indices["val"]) == [0, 1, 2, 3]
    assert sorted(monitor._probe_indices["train"]) == [0, 1, 2, 3]
    assert monitor.events == 1 and not monitor.disabled


def test_overfitting_steps_aside_under_fast_dev_run(tmp_path):
    monitor = OverfittingMonitor(num_samples=4)
    trainer = L.Trainer(default_root_dir=tmp_path, fast_dev_run=2, callbacks=[monitor])
    with pytest.warns(UserWarning, match="step aside"):
        trainer.fit(
            Scripted(), DataLoader(TRAIN_SET, batch_size=2), DataLoader(VAL_SET, batch_size=2)
        )
    assert monitor.events == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tolerance": -0.1}, "`tolerance` must be a number in [0.0, inf], got -0.1"),
        ({"tolerance": "10%"}, "`tolerance` must be a number"),
        ({"patience": 0}, "`patience` must be a positive integer, got 0"),
        ({"patience": 1.5}, "`patience` must be a positive integer, got 1.5"),
        ({"val_loss_key": ""}, "`val_loss_key` must be a non-empty string, got ''"),
        ({"train_acc_key": None}, "`train_acc_key` must be a non-empty string, got None"),
        ({"num_samples": 0}, "`num_samples` must be a positive integer, got 0"),
        ({"every_n_steps": 1, "every_n_epochs": 1}, "Set only one of"),
    ],
)
def test_overfitting_argument_validation(tmp_path, kwargs, message):
    with pytest.raises(
        ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")
    ):
        OverfittingMonitor(**kwargs)


class OtherScales(Scripted):
    """Logs its val accuracy ``val_acc(epoch)`` (R^2 for a regression, or percentages)."""

    def __init__(self, val_acc) -> None:
        super().__init__()
        self.val_acc = val_acc

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.val_series[self.current_epoch])
        self.log("val/acc", self.val_acc(self.current_epoch))


def test_overfitting_an_accuracy_out_of_range_is_left_out_a_percentage_read(tmp_path):
    # held out: R^2 logged as `val_acc` (-0.73 -> -0.91) gave "train accuracy 98.8% vs
    # -79.3% on validation" and a memorisation problem on top of the real finding
    monitor = OverfittingMonitor(num_samples=4)
    trainer, said = fit(tmp_path / "r2", monitor, OtherScales(lambda e: -0.7 - 0.03 * e))
    assert len([m for m in said if "reads -0.7, which no accuracy does" in m]) == 1
    assert all(e.val_acc is None for e in monitor.detector.history)  # the probe's instead
    assert "memorisation" not in {f.kind for f in findings_of(trainer)}
    # a percentage: read as a share of 1, said once
    monitor = OverfittingMonitor(num_samples=4)
    _, said = fit(tmp_path / "pct", monitor, OtherScales(lambda e: 75.0))
    assert [e.val_acc for e in monitor.detector.history] == [pytest.approx(0.75)] * 7
    assert len([m for m in said if "read as a percentage" in m]) == 1


def test_overfitting_pairs_image_keeps_wide_examples_legible_and_bounded():
    # setups hunt 26: 16 x 512 text lines drew each example as a 48 x 1128 block of smeared
    # stripes (shrunk by the long side, grown by the short one): a 6776 px wide image
    pair = Pair(true=1, predicted=0, count=4, share=0.5, examples=[1, 2, 3, 4])
    lines = torch.rand(4, 1, 16, 512)
    image = pairs_image([pair], [lines], epoch=0)
    assert image.shape[-1] <= 2 * (4 * (4 * 48 + 2) + 8)  # four capped examples, drawn x2
    digits = pairs_image([pair], [torch.rand(4, 1, 28, 28)], epoch=0)
    assert digits.shape[-2] >= 2 * 48  # small images still grown to 48 rows
