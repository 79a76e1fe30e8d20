"""The scale a run starts at: a loss scaled, read from step 0 where the first updates blew up."""

import lightning as L
import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.core.findings import findings_of
from tests.activations.diagnosis_nets import Net, fit, plain_cnn, scaled_cnn
from tests.tb import events, texts


class Scaled(Net):
    """A cross-entropy multiplied by 1000 in ``training_step``."""

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1]) * 1000


def test_initial_scale_loss_x1000_under_sgd_names_the_scaled_loss_not_the_init(tmp_path):
    # held-out hunt 122: a cross-entropy x1000 under SGD 0.05 blew the weights up at step 1,
    # before the first log's probe could read the model's own cross-entropy; the divergence
    # blamed weights initialised too large ("a standard initialisation instead of a scaled-up
    # one") at PyTorch's default init, and no `scaled_loss` was told
    L.seed_everything(0, verbose=False)  # the net's init too
    trainer, said = fit(tmp_path, Scaled(plain_cnn(nn.ReLU, 3, 8, (0, 1)), lr=0.05), 10, every=5)
    found = {f.kind: f for f in findings_of(trainer)}
    assert "scaled_loss" in found, [str(f) for f in found.values()]
    note = found["scaled_loss"]
    assert (note.severity, note.step) == ("note", 5)
    assert 900 < note.figures["scale"] < 1100  # the first loss over ln 10
    assert "The training loss is ~" in note.message and "x the chance level" in note.message
    diverged = found["divergence"]
    assert "x the model's own cross-entropy (scaled in `training_step`" in diverged.message
    assert "initialised too large" not in diverged.message
    assert "standard initialisation" not in diverged.message
    written = texts(events(tmp_path), "activations/diagnosis")[0]
    assert note.message in written and diverged.message in written
    assert any(diverged.message in m for m in said)  # a problem warns, a note does not
    assert not any(note.message in m for m in said)


def test_initial_scale_weights_at_a_standard_scale_read_so_at_step_0(tmp_path):
    import torchvision

    from lightning_cnnviz.activations.initial_scale import STANDARD_GROWTH, init_growth

    default, he = plain_cnn(nn.ReLU, 6, 8, (1, 3)), scaled_cnn(1.0)
    bn = torchvision.models.resnet18(weights=None)  # every conv followed by a BatchNorm
    for net in (default, he, bn):
        assert float(init_growth(list(net.named_modules()))) < 1.1  # He: sqrt(2), sampled
    assert float(init_growth(list(scaled_cnn(2.0).named_modules()))) > STANDARD_GROWTH
    # a plain loss at the default init: no loss scaled, and nothing goes wrong
    L.seed_everything(0, verbose=False)
    trainer, _ = fit(tmp_path, Net(plain_cnn(nn.ReLU, 3, 8, (0, 1)), lr=0.05), 10, every=5)
    assert [(f.kind, f.severity) for f in findings_of(trainer)] == []
