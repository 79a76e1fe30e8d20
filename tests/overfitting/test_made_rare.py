"""Classes made rare during the run by a sampler: told as the imbalance, not memorisation."""

from dataclasses import replace

import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from tests.overfitting.runs import Net, TakesTwoForThird, fit_monitor, one_hot_set

# held-out hunt 125: a BatchNorm CNN under RMSprop, a WeightedRandomSampler drawing classes
# 5-9 at 1% of the others' weight from step 128 (validations every 32 steps). Per
# evaluation: train loss, train acc, val acc, val loss, left-out classes, val probe recall
# per class, balanced accuracy, the class the left-out ones are taken for
RUN = [
    (1.912, 0.476, 0.204, 2.01, [0, 2, 3, 4, 5, 6, 8, 9],
     [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.77, 0.0, 0.0], 0.177, 7),
    (1.524, 0.698, 0.576, 1.492, [2, 4],
     [0.54, 1.0, 0.08, 0.54, 0.08, 0.54, 0.77, 0.85, 0.75, 0.58], 0.572, 1),
    (1.297, 0.785, 0.57, 1.322, [4],
     [1.0, 1.0, 0.15, 0.85, 0.08, 0.38, 0.62, 0.92, 0.25, 0.17], 0.542, 1),
    (1.119, 0.844, 0.532, 1.339, [3],
     [0.15, 1.0, 0.15, 0.08, 1.0, 0.31, 0.69, 1.0, 0.75, 0.5], 0.563, 7),
    (0.867, 0.9, 0.792, 1.056, [5],
     [1.0, 1.0, 0.85, 0.92, 1.0, 0.0, 0.85, 0.69, 1.0, 0.67], 0.797, 3),
    (0.719, 0.923, 0.74, 1.08, [5],
     [1.0, 1.0, 0.77, 0.92, 1.0, 0.0, 0.62, 0.54, 1.0, 0.58], 0.743, 3),
    (0.616, 0.939, 0.69, 1.105, [5],
     [1.0, 1.0, 0.85, 1.0, 1.0, 0.0, 0.31, 0.46, 0.75, 0.25], 0.662, 3),
    (0.544, 0.944, 0.604, 1.179, [5, 6],
     [1.0, 1.0, 0.85, 1.0, 1.0, 0.0, 0.08, 0.46, 0.17, 0.17], 0.572, 3),
]  # fmt: skip
BALANCED = [0.101, 0.104, 0.095, 0.102, 0.099, 0.09, 0.102, 0.114, 0.093, 0.1]
SAMPLED = [0.2, 0.207, 0.187, 0.203, 0.195, 0.002, 0.002, 0.002, 0.002, 0.002]  # from step 128


def evaluation(i, row, shares):
    """The ``Evaluation`` of ``RUN``'s ``row`` (its ``i``-th), with the training ``shares``."""
    loss, train, val, val_loss, left, recalls, balanced, taken = row
    return Evaluation(32 * (i + 1), i, train_loss=loss, train_acc=train, val_acc=val,
                      val_loss=val_loss, lr=5e-4, classes=10.0, val_images=500.0, ignored=left,
                      recalls_val=recalls, class_images_val=[13] * 8 + [12] * 2,
                      balanced_acc_val=balanced, class_shares_train=shares,
                      ignored_share=max(shares[c] for c in left), top_share=max(shares),
                      taken_for=taken)  # fmt: skip


def told(rows):
    """Each (step, kind, severity) the detector tells first, and its verdicts."""
    detector, said, verdicts = Detector(), [], {}
    for i, row in enumerate(rows):
        ev = evaluation(i, row, BALANCED if i < 4 else SAMPLED)
        for c in detector.update(ev):
            if c.change == "new":
                said.append((ev.step, c.verdict.kind, c.verdict.severity))
                verdicts[c.verdict.kind] = c.verdict
    return said, verdicts


def test_made_rare_is_told_at_the_first_validation_and_not_as_memorisation():
    said, verdicts = told(RUN)
    # at the first validation after the sampler was set, with no note first ...
    assert said == [(160, "class_imbalance", "problem")]
    # ... and the val fall it brings is not memorisation ("noisy or wrong labels")
    assert not {"memorisation", "overfitting"} & {kind for _, kind, _ in said}
    words = headline(verdicts["class_imbalance"])
    assert words.startswith("Rare classes left out since epoch 4 (step 160)")
    assert "predicted at step 128, at 9.0% of the training labels or more" in words


def test_made_rare_waits_as_a_late_learner_where_the_shares_never_changed():
    # the same figures with the sampled shares all run: rare from the start, a note first
    detector, said = Detector(), []
    for i, row in enumerate(RUN):
        ev = evaluation(i, row, SAMPLED)
        said += [(ev.step, c.verdict.kind, c.verdict.severity) for c in detector.update(ev)
                 if c.change == "new" and c.verdict.kind == "class_imbalance"]  # fmt: skip
    assert said and said[0][2] == "note"


class SamplerFromEpoch(Net):
    """Fixed 4-class model (``TakesTwoForThird``); from epoch 2 a sampler draws 1 and 2 rarely."""

    def train_dataloader(self):
        data = one_hot_set([64] * 4)
        if self.current_epoch < 2:
            return DataLoader(data, batch_size=32, shuffle=True)
        weights = torch.where((data.tensors[1] == 1) | (data.tensors[1] == 2), 0.01, 1.0)
        sampler = WeightedRandomSampler(weights, len(weights), generator=torch.Generator())
        return DataLoader(data, batch_size=32, sampler=sampler)

    def val_dataloader(self):
        return DataLoader(one_hot_set([20] * 4, seed=1), batch_size=40)


def test_made_rare_training_shares_are_read_again_from_a_reloaded_loader(tmp_path):
    model = SamplerFromEpoch(nn.Sequential(TakesTwoForThird()), lr=0.0)
    trainer, _ = fit_monitor(tmp_path, model, None, None, 4, reload_dataloaders_every_n_epochs=1)
    monitor = next(c for c in trainer.callbacks if isinstance(c, OverfittingMonitor))
    shares = [e.class_shares_train for e in monitor.detector.history]
    assert shares[0] == [0.25] * 4  # as the shuffled loader drew
    # ... and as the sampler draws from epoch 2: classes 1 and 2 at 0.5% each
    assert [round(s, 3) for s in shares[-1]] == [0.495, 0.005, 0.005, 0.495]


def told_beside_bn(momentum):
    """``told(RUN)`` with eval mode 20 points below batch statistics from the sampler on."""
    detector, said = Detector(), []
    for i, row in enumerate(RUN):
        ev = evaluation(i, row, BALANCED if i < 4 else SAMPLED)
        if i >= 4:  # as the made-rare run read it: the gap is the new draws'
            acc = ev.val_accuracy
            ev = replace(ev, probe_acc_val=acc, probe_acc_bn=acc + 0.2, bn_only=0.22,
                         eval_only=0.02, probe_size=128.0, bn_size=128.0,
                         bn_momentum=momentum, run_share=(i + 1) / 10)  # fmt: skip
        said += [(ev.step, c.verdict.kind, c.verdict.severity) for c in detector.update(ev)
                 if c.change == "new"]  # fmt: skip
    said += [(0, c.verdict.kind, c.verdict.severity) for c in detector.conclude()]
    return said, detector


def test_made_rare_holds_the_batch_norm_gap_it_explains():
    said, detector = told_beside_bn(momentum=0.1)
    assert (160, "class_imbalance", "problem") in said
    # no "raise momentum" beside the classes made rare, nor at the end of fit
    assert [s for s in said if s[1] == "bn_mismatch"] == []
    # ... its figures are the imbalance's evidence, once it worsens (class 6 out at 256)
    v = detector.reported["class_imbalance"]
    assert v.detected.step == 256 and v.figures["left_out"] == 2
    assert "Eval mode trails batch statistics too (val probe 60.4% vs 80.4%)" in headline(v)
    # a momentum whose lag lasts is told beside them, at the second evaluation it holds
    slow, _ = told_beside_bn(momentum=0.001)
    assert (192, "bn_mismatch", "problem") in slow and (160, "class_imbalance", "problem") in slow
