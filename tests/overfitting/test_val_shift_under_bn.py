"""Val images unlike the training ones under BatchNorm, unseen by the per-channel screen.

Held out (hunt 117): val digits with noise of sd 0.25 (1.03x in spread, under the screen's
bars) on a BatchNorm CNN, eval mode 89-94% on training images and 41% on the val probe,
91% on it with batch statistics, were told as BatchNorm running statistics that lag, and
beside them a gap whose words led with "the model memorises its training images".
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import gap
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.overfitting.runs import Net, fit_monitor
from tests.overfitting.test_bn_beside_inputs import LAG, told

# held-out hunt 117's run at step 200: eval mode 89% on the train probe, 41% on the val probe
SHIFTED = {"train_acc": 0.9, "probe_acc_train": 0.89, "probe_acc_val": 0.41,
           "probe_acc_bn": 0.91, "bn_only": 0.52, "eval_only": 0.02, "probe_size": 128.0,
           "probe_size_train": 128.0, "bn_size": 128.0, "classes": 10.0}  # fmt: skip


def tensors(data):
    images, labels = zip(*(data[i] for i in range(len(data))), strict=True)
    return torch.stack(images), torch.tensor(labels)


def noisy_val_run(tmp_path, sd):
    """A BatchNorm CNN on synthetic digits, its val digits with noise of sd ``sd`` added."""
    data = SyntheticDigitsDataModule(train_size=1280, val_size=256, seed=0)
    data.setup("fit")
    (x, y), (val_x, val_y) = tensors(data.train_dataset), tensors(data.val_dataset)
    noise = sd * torch.randn(val_x.shape, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    net = nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                        *block(32, 32), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(32, 10))  # fmt: skip
    train = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(val_x + noise, val_y), batch_size=128)
    trainer, _ = fit_monitor(tmp_path, Net(net, lr=1e-3), train, val, epochs=6)
    return {f.kind: f for f in findings_of(trainer) if f.severity == "problem"}


def test_val_shift_under_bn_noise_the_screen_misses_is_told_as_the_inputs(tmp_path):
    # noise of sd 0.4: 1.06x in spread, under the screen's bars; eval mode reads the train
    # probe at the level of the val probe on batch statistics, the val probe far under both
    found = noisy_val_run(tmp_path, sd=0.4)
    assert set(found) == {"inputs_differ"}
    shift = found["inputs_differ"]
    assert "channel" not in shift.figures  # not from the screen
    assert shift.figures["train_eval_acc"] - shift.figures["eval_acc"] > 0.2
    assert shift.figures["batch_stats_acc"] - shift.figures["eval_acc"] > 0.2
    assert "Each channel's mean and spread match on the two probes" in shift.message


def test_val_shift_under_bn_a_lag_failing_both_probes_stays_a_mismatch():
    # eval mode as far off on training images as on val ones: the running statistics'
    lag = {**LAG, "probe_acc_train": 0.094, "bn_size": 128.0}
    assert not gap.shifted_val_images(Evaluation(0, 0, **lag))
    kinds, _ = told([lag] * 3)
    assert kinds == ["bn_mismatch", "generalisation_gap"]
    kinds, detector = told([SHIFTED] * 3)
    assert kinds == ["inputs_differ"]
    assert detector.reported["inputs_differ"].figures["train_eval_acc"] == 0.89


def test_val_shift_under_bn_gap_back_on_batch_statistics_is_no_memorising():
    now = Evaluation(160, 3)
    figures = {"train_acc": 0.922, "val_acc": 0.186, "val_at_chance": False,
               "val_acc_bn": 0.914}  # fmt: skip
    text = headline(Verdict("generalisation_gap", now, now, None, figures))
    assert "(91.4% with BatchNorm on the val batches' own statistics)" in text
    assert "memorises" not in text and "the val images differ from the training ones" in text
    lower = headline(Verdict("generalisation_gap", now, now, None, {**figures, "val_acc_bn": 0.3}))
    assert "the model memorises its training images" in lower
