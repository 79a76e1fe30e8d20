"""A class learnt, then fading while the others hold: told as such, before overfitting."""

import dataclasses
import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.class_fading import faded, fading
from lightning_cnnviz.overfitting.class_figures import probe_figures
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.remedies import remedies
from lightning_cnnviz.presets import callbacks


def ev(step, recalls, images=25, val_loss=0.05):
    """An evaluation whose val probe has ``images`` per class at ``recalls`` (the rest: 0)."""
    k = len(recalls)
    rows = []
    for i, r in enumerate(recalls):
        right = round(r * images)
        row = [0] * k
        row[i], row[(i + 1) % k] = right, images - right
        rows.append(row)
    acc = sum(recalls) / k
    return Evaluation(step, step // 100, train_loss=2 / step, val_loss=val_loss, train_acc=1.0,
                      val_acc=acc, **probe_figures(rows, None))  # fmt: skip


def told(evs):
    """Each kind the detector tells, with the step it first told it at (problems only)."""
    detector, first = Detector(), {}
    for e in evs:
        for change in detector.update(e):
            v = change.verdict
            if change.change == "new" and v.severity == "problem":
                first.setdefault(v.kind, e.step)
    return first, detector


LEARNT = [ev(s, [1.0] * 5, val_loss=0.03) for s in (100, 200, 300)]


def test_class_fading_is_told_at_its_second_evaluation_and_not_as_overfitting():
    # class 4 unlearnt (an `ignore_index` set at step 300): 100% -> 60% -> 76% -> 44%, the
    # val loss climbing with it; the others hold at 100%
    series = ((400, 0.6, 0.15), (500, 0.76, 0.2), (600, 0.44, 0.3), (700, 0.2, 0.4))
    fade = [ev(s, [1, 1, 1, 1, r], val_loss=loss) for s, r, loss in series]
    first, detector = told([*LEARNT, *fade])
    assert first == {"class_imbalance": 500}
    v = detector.reported["class_imbalance"]
    assert v.figures["faded"][0][:3] == [4, 1.0, 300] and v.since.step == 400
    assert v.figures["faded"][0][3] == 0.2  # updated as it fades further
    words = headline(v)
    assert words.startswith("Class 4 fading since epoch 4 (step 400)")
    assert "100.0% (step 300) -> 20.0%" in words and "not overfitting" in words
    assert "after step 300" in remedies(v)[0]


def test_class_fading_one_dip_is_noise_and_overfitting_still_told():
    climb = [0.06, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    plain = [ev(400 + 100 * i, [1.0] * 5, val_loss=loss) for i, loss in enumerate(climb)]
    dip = [ev(400, [1, 1, 1, 1, 0.6], val_loss=climb[0]), *plain[1:]]
    first, _ = told([*LEARNT, *plain])
    assert "overfitting" in first
    with_dip, _ = told([*LEARNT, *dip])
    assert "class_imbalance" not in with_dip
    assert first["overfitting"] <= with_dip["overfitting"] <= first["overfitting"] + 100


def test_class_fading_needs_a_fall_past_the_probe_noise():
    # 13 images a class (a 128-image probe of 10): 100% -> 69% is 4 images, within noise
    seen = [ev(s, [1.0] * 10, images=13) for s in (100, 200, 300)]
    noisy = ev(400, [1.0] * 9 + [9 / 13], images=13)
    assert fading([*seen, noisy]) == {}
    assert fading([*seen, ev(400, [1.0] * 9 + [3 / 13], images=13)]) == {9: (1.0, 300)}
    assert fading([*seen[1:], ev(400, [1.0] * 9 + [3 / 13], images=13)]) == {}  # 2 before


def test_class_fading_one_dip_then_back_within_the_probes_noise_is_not_a_fade():
    # hunt 63: 10 val images a class; class 8 at 93-100%, one reading of 7%, then 80% (8/10)
    c8 = [0.93, 0.8, 0.87, 1.0, 1.0, 0.8, 0.67, 0.93, 0.93, 0.93, 0.07, 0.8]
    val = [0.83, 0.79, 0.73, 0.78, 0.65, 0.76, 0.72, 0.86, 0.83, 0.79, 0.72, 0.82]
    others = [0.85, 0.95, 0.75, 0.85, 0.8, 0.7, 0.85, 0.85, 0.8]
    seen = [Evaluation(260 + 10 * i, 2, recalls_val=[*others[:8], r, others[8]],
                       class_images_val=[10] * 10, balanced_acc_val=0.8, val_acc=v)
            for i, (r, v) in enumerate(zip(c8, val, strict=True))]  # fmt: skip
    assert faded(seen) is None
    gone = [dataclasses.replace(seen[-1], step=380, recalls_val=[*others[:8], 0.1, others[8]])]
    assert faded([*seen[:-1], *gone])["faded"][0][0] == 8  # 7% then 10%: gone


def test_class_fading_not_while_a_3_class_model_finds_its_feet():
    # hunt 64: a healthy 3-class run validated every 5 steps favoured class 0 (96%), then
    # classes 1 and 2 (0%), at 47-73% val; 99.3% at the end
    rows = [(5, [0.41, 1.0, 0.0]), (10, [0.96, 1.0, 0.0]), (15, [0.96, 0.94, 0.28]),
            (20, [0.0, 1.0, 0.84]), (25, [0.0, 1.0, 0.96])]  # fmt: skip
    seen = [Evaluation(s, 0, recalls_val=r, class_images_val=[50] * 3, balanced_acc_val=sum(r) / 3)
            for s, r in rows]  # fmt: skip
    assert faded(seen) is None and fading(seen) == {}


def test_class_fading_is_not_the_early_swings_nor_most_classes_falling():
    # a class at 100% at one early validation only, the model at 55%
    early = [
        ev(20, [1, 0, 1, 0.9, 0]),
        ev(40, [1, 0.5, 0.5, 0.25, 1]),
        ev(60, [1, 0.3, 0.7, 1, 0.8]),
    ]
    assert fading(early) == {}
    falling = [*LEARNT, ev(400, [1, 1, 0.4, 0.4, 0.4])]  # three of five: the model, not a class
    assert fading(falling) == {}
    others = [*LEARNT, ev(400, [0.8, 0.8, 1, 1, 0.3])]  # the others fell too
    assert fading(others) == {}


def test_class_fading_a_class_learnt_unevenly_counts_once_it_reached_its_best_twice():
    # hunt 62: class 0 at 94% 60% 80% 67% 83% 41% 89%, then its labels mapped to class 6:
    # 0% at once; a best held at two validations in a row was never there
    recalls = (0.94, 0.6, 0.8, 0.67, 0.83, 0.41, 0.88)
    uneven = [ev(100 * (i + 1), [r, 1, 1, 1, 1]) for i, r in enumerate(recalls)]
    assert fading([*uneven, ev(800, [0.0, 1, 1, 1, 1])]) == {0: (0.88, 700)}
    assert fading([*uneven[:1], ev(800, [0.0, 1, 1, 1, 1])]) == {}  # once is one lucky reading


def test_class_fading_not_while_the_logged_val_accuracy_reaches_a_new_high():
    # hunt 62: an EMA copy validated at 81% -> 93% while the probe's pass of the raw,
    # wobbling weights had a class at 92% -> 46%
    fade = [ev(400, [1, 1, 1, 1, 0.5]), ev(500, [1, 1, 1, 1, 0.4])]
    seen = [*LEARNT, *fade]
    assert faded(seen) is not None
    logged = [dataclasses.replace(e, val_acc=0.9) for e in LEARNT]  # another model's
    assert faded([*logged, *fade]) is not None  # 88-90%: no new high
    higher = [dataclasses.replace(e, val_acc=0.93) for e in fade]
    assert faded([*logged, *higher]) is None


def test_class_fading_a_class_gone_from_a_best_reached_once_is_told():
    # hunt 77: the sampler stopped drawing class 3 at step 150 of a run still learning: its
    # recall 50%, 76%, then 0% at every validation to step 400, the others rising and the
    # logged val accuracy at new highs, and nothing was told
    rising = [ev(100, [0.7, 0.7, 0.7, 0.5, 0.7]), ev(200, [0.8, 0.8, 0.8, 0.76, 0.8])]
    gone = [ev(s, [r, r, r, 0.0, r]) for s, r in ((300, 0.9), (400, 0.95))]
    first, detector = told([*rising, *gone])
    assert first == {"class_imbalance": 400}
    v = detector.reported["class_imbalance"]
    assert v.figures["faded"][0] == [3, 0.76, 200, 0.0] and v.since.step == 300
    assert headline(v).startswith("Class 3 fading since epoch 3 (step 300)")
    # not for a class never learnt (50% at best), nor one gone at a single evaluation
    never = [ev(s, [0.8, 0.8, 0.8, r, 0.8]) for s, r in ((100, 0.3), (200, 0.5))]
    assert faded([*never, *gone]) is None
    assert faded([*rising, gone[0], ev(400, [0.95, 0.95, 0.95, 0.6, 0.95])]) is None


def test_class_fading_goes_away_once_the_class_is_back():
    back = [ev(400, [1, 1, 1, 1, 0.5]), ev(500, [1, 1, 1, 1, 0.5]), ev(600, [1, 1, 1, 1, 0.96])]
    _, detector = told([*LEARNT, *back])
    assert detector.reported["class_imbalance"].severity == "note"


def waves(n, seed):
    """1-D signals of 5 classes: a sine whose frequency is the class, in noise (hunt 57's)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 5, (n,), generator=g)
    t = torch.linspace(0, 1, 128)
    x = torch.randn(n, 1, 128, generator=g)
    phase = torch.rand(n, generator=g)[:, None, None] * 6.28
    return x + torch.sin(2 * math.pi * (3 + 2 * y[:, None, None].float()) * t + phase), y


class Untaught(L.LightningModule):
    """A Conv1d net whose loss gets `ignore_index=4` at step 300 (hunt 57)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, 16, 7, padding=3), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
            nn.Linear(32, 5),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        loss = F.cross_entropy(out, y, ignore_index=4 if self.global_step >= 300 else -100)
        self.log("train_loss", loss)
        self.log("train_acc", (out.argmax(1) == y).float().mean())
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.log("val_loss", F.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, nesterov=True)


class FirstTold(L.Callback):
    """The step each problem kind was first told at (its finding's step when first seen)."""

    def __init__(self):
        self.steps = {}

    def on_train_batch_end(self, trainer, *args):
        for f in findings_of(trainer):
            if f.severity == "problem":
                self.steps.setdefault(f.kind, f.step)


def test_class_fading_an_ignore_index_set_mid_run_is_told_before_overfitting(tmp_path):
    # class 4's val recall: 100% at step 300, 84% (360), 60% (380), 76% (400), ...
    L.seed_everything(0, verbose=False)
    first = FirstTold()
    trainer = L.Trainer(max_steps=460, val_check_interval=20, check_val_every_n_epoch=None,
                        callbacks=[*callbacks("standard"), first], default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0)  # fmt: skip
    train = DataLoader(TensorDataset(*waves(3000, 0)), batch_size=32, shuffle=True, drop_last=True)
    trainer.fit(Untaught(), train, DataLoader(TensorDataset(*waves(600, 1)), batch_size=256))
    assert first.steps == {"class_imbalance": 400}  # one validation after the fall shows
    (found,) = [f for f in findings_of(trainer) if f.severity == "problem"]
    assert found.first_line.startswith("Class 4 fading since epoch 4 (step 380)")
    assert found.figures["faded"][0][:3] == [4, 1.0, 300]
