"""A blow-up of the first steps the loss comes back from only to crawl (held-out hunt 118)."""

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn
from tests.tb import events, texts


class Scaled(Net):
    """The loss returned 70x at step 1 (its gradient as ever), ``after`` x from step 12.

    As Adam at 0.3 gave mobilenet_v2: 2.32 -> 179 at step 1, then about its start.
    """

    def __init__(self, lr: float, after: float) -> None:
        super().__init__(leaky_cnn(), lr=lr)
        self.after = after

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        step = self.global_step
        factor = 70.0 if step == 1 else self.after if step >= 12 else 1.0
        return loss + ((factor - 1.0) * loss).detach()  # the value scaled, not the update


def _divergence(trainer):
    (found,) = [f for f in findings_of(trainer) if f.kind == "divergence"]
    return found


def test_divergence_crawl_back_below_the_start_stays_a_problem(tmp_path):
    # a model at a rate too small to learn: the loss back to 0.85x its start after the
    # spike (was: "Training recovered ... (below the start)", a note, at step 20)
    trainer = fit(tmp_path, Scaled(lr=1e-6, after=0.85), 40, every=10)[0]
    found = _divergence(trainer)
    assert found.severity == "problem" and found.step == 20
    assert "came back from the spike at step 1" in found.message
    assert "has learnt little since" in found.message and "% below its start" in found.message
    assert 0.8 < found.figures["loss_now"] / found.figures["start_loss"] < 0.9
    assert "lower the learning rate" in found.message
    said = "\n".join(texts(events(tmp_path), "activations/diagnosis"))
    assert "Training recovered" not in said


def test_divergence_crawl_a_loss_that_learns_after_the_spike_is_a_note(tmp_path):
    # the same spike, a model that learns: halved by step 20, a note as before
    trainer = fit(tmp_path, Scaled(lr=0.05, after=1.0), 40, every=10)[0]
    found = _divergence(trainer)
    assert found.severity == "note" and "Training recovered from the loss spike" in found.message


class NoisyDigits(SyntheticDigitsDataModule):
    """Synthetic digits, 55% of the labels another class (fixed per item), as in training.

    The best loss is the noise's entropy, 0.82 ln 10: the loss stays above ``RELEARNT`` x
    its start, and the probe's accuracy on these labels under ``learnt_well``, while the
    model learns (held-out hunt 121: MNIST, half the labels noise).
    """

    def setup(self, stage=None):
        super().setup(stage)
        if not isinstance(self.train_dataset, NoisyLabels):  # (the probe's labels too)
            self.train_dataset = NoisyLabels(self.train_dataset)
            self.val_dataset = NoisyLabels(self.val_dataset)


class NoisyLabels(torch.utils.data.Dataset):
    def __init__(self, items) -> None:
        self.items, draw = items, torch.Generator().manual_seed(3)
        flip = torch.rand(len(items), generator=draw) < 0.55
        self.shift = torch.where(flip, torch.randint(1, 10, (len(items),), generator=draw), 0)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        image, label = self.items[index]
        return image, (int(label) + int(self.shift[index])) % 10


class HotFirstStep(Scaled):
    """SGD's first step at 40x its rate 0.05, then 0.05; its blow-up as ``Scaled`` returns it."""

    def __init__(self) -> None:
        super().__init__(lr=0.05, after=1.0)

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        hot = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 40.0 if step == 0 else 1.0)
        return [opt], [{"scheduler": hot, "interval": "step"}]


def test_divergence_crawl_a_hot_first_step_is_not_the_rate_in_force(tmp_path):
    # the rate in force since is 40x below the one that blew the loss up: no "too high to
    # learn at" (was: a crawl problem "The learning rate (0.05) is too high", the run's
    # only problem); the spike ends as a note naming the hot rate once past chance
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=150, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[ActivationMonitor(every_n_steps=10)],
    )  # fmt: skip
    trainer.fit(HotFirstStep(), NoisyDigits(train_size=64 * 150, val_size=64, batch_size=64))
    found = _divergence(trainer)
    assert found.severity == "note" and "Training recovered from the loss spike" in found.message
    assert "It came at a learning rate of 2, 40x the 0.05 in force now" in found.message
    said = "\n".join(texts(events(tmp_path), "activations/diagnosis"))
    assert "too high to learn at" not in said
